"""Where the links of an HTML document are, as a browser (and Outlook) would read them.

A small tokenizer after the WHATWG HTML tokenizer, for the one thing click tracking needs: the ``href``
of each ``<a>``/``<area>`` start tag, as a span of the source, so the caller rewrites that span and
every other character of the message stays as it was (email HTML is fragile: nothing is
re-serialised). Text, comments, ``<script>``/``<style>`` content and other attributes' values are
skipped as a browser skips them. Outlook's conditional comments (``<!--[if mso]>...<![endif]-->``) are
read inside: Outlook renders them, and they hold its buttons (VML shapes whose ``href`` is the link).

Not ``html.parser``: it raises on a ``<![word`` that is not a known marked section (one odd template
line would fail the send), reads ``<!-->`` as the start of a long comment, and its rules change between
Python patch releases; this scanner never raises and reads the same everywhere.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.entities import html5
from typing import NamedTuple

# One attribute, after any spaces and "/": its name (a first "=" belongs to it), then maybe "=" and a
# double-quoted, single-quoted or unquoted value. Atomic and possessive, as the tokenizer never goes
# back; a quote never closed matches nothing (the tag runs to the end of the document).
_ATTR = (
    r"""[\t\n\f\r /]*+([^\t\n\f\r />][^\t\n\f\r /=>]*+)[\t\n\f\r ]*+"""
    r"""(?:=[\t\n\f\r ]*+(?:"([^"]*+)"|'([^']*+)'|(?!["'])([^\t\n\f\r >]*+))|(?!=))"""
)
_ATTRIBUTE = re.compile(_ATTR)
# a whole start or end tag (an end tag's attributes are lexed alike, and ignored)
_TAG = re.compile(rf"<(/?)([a-zA-Z][^\t\n\f\r />]*+)(?>{_ATTR})*+[\t\n\f\r /]*+>")
_CONDITIONAL = re.compile(r"\[if\b[^\]]*\]>", re.IGNORECASE)  # what follows <!-- in Outlook's comments
# elements whose content is text up to their end tag (RCDATA, RAWTEXT, script data, plaintext)
_RAW = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})
_RAW_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW}
_LINKS = frozenset({"a", "area"})


class Href(NamedTuple):
    start: int  # the value's span in the document, quotes excluded
    end: int
    quote: str  # '"', "'" or "" (unquoted)


def _first_href(s: str, i: int, end: int) -> Href | None:
    """The first href among the attributes in ``s[i:end]`` (a repeated attribute is dropped)."""
    while (m := _ATTRIBUTE.match(s, i, end)) is not None:
        attr, i = m.group(1), m.end()
        if len(attr) == 4 and attr.lower() == "href":
            for group, quote in ((2, '"'), (3, "'"), (4, "")):
                if m.start(group) >= 0:
                    return Href(m.start(group), m.end(group), quote)
    return None


def link_hrefs(s: str, start: int = 0, stop: int | None = None, *, outer: bool = True) -> Iterator[Href]:
    """The href spans of the links in ``s[start:stop]``, in document order."""
    stop = len(s) if stop is None else stop
    i = start
    while (i := s.find("<", i, stop)) >= 0:
        nxt = s[i + 1 : min(i + 2, stop)]
        if nxt == "/":
            nxt = s[i + 2 : min(i + 3, stop)]
            if not (nxt.isascii() and nxt.isalpha()):
                i = _past(s, ">", i + 2, stop)  # "</>" is dropped, anything else is a bogus comment to ">"
                continue
        if nxt.isascii() and nxt.isalpha():
            tag = _TAG.match(s, i, stop)
            if tag is None:  # the document ends inside the tag: a browser drops it and what follows
                return
            i, name = tag.end(), tag.group(2).lower()
            if tag.group(1):  # an end tag
                continue
            href = _first_href(s, tag.end(2), i - 1) if name in _LINKS or name[:2] == "v:" else None
            if href is not None:
                yield href
            if name == "plaintext":
                return
            if name in _RAW:  # its content is text up to "</name" then a space, "/" or ">"
                close = _RAW_END[name].search(s, i, stop)
                if close is None:
                    return
                i = close.start()
        elif s.startswith("<!--", i, stop):
            body = i + 4
            if s.startswith(">", body, stop) or s.startswith("->", body, stop):  # <!--> and <!---> are empty
                i = _past(s, ">", body, stop)
                continue
            ends = [e for e in (s.find("-->", body, stop), s.find("--!>", body, stop)) if e >= 0]
            end = min(ends) if ends else stop
            # Outlook renders this as HTML, every other client sees a comment. Comments do not nest: one
            # inside it reaches its end, so the recursion stops at one level.
            if outer and (cond := _CONDITIONAL.match(s, body, end)):
                yield from link_hrefs(s, cond.end(), end, outer=False)
            i = _past(s, ">", end, stop)
        elif nxt in ("!", "?"):  # <!DOCTYPE ...>, <![endif]>, <?xml ...>: up to the next ">"
            i = _past(s, ">", i + 2, stop)
        else:
            i += 1


def _past(s: str, char: str, i: int, stop: int) -> int:
    at = s.find(char, i, stop)
    return stop if at < 0 else at + 1


_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_LEGACY_LONGEST = max(len(name) for name in html5 if not name.endswith(";"))


def attribute_value(raw: str) -> str:
    """The value a browser reads from an attribute's source: character references decoded by the
    attribute rules. Unlike ``html.unescape``, a reference without its ``;`` followed by a letter,
    digit or ``=`` stays as written: ``?a=1&region=eu`` is not ``?a=1®ion=eu``."""
    if "&" not in raw:
        return raw

    def decode(m: re.Match) -> str:
        ref = m.group(1)
        if ref[0] == "#":
            return _numeric(ref)
        if ref.endswith(";") and ref in html5:
            return html5[ref]
        for n in range(min(len(ref), _LEGACY_LONGEST), 0, -1):
            if ref[:n] in html5:  # an old entity that may go without its ";"
                after = raw[m.start(1) + n : m.start(1) + n + 1]
                if (after.isascii() and after.isalnum()) or after == "=":
                    return m.group()
                return html5[ref[:n]] + ref[n:]
        return m.group()

    return _CHARREF.sub(decode, raw)


def _numeric(ref: str) -> str:
    # html.unescape's rules for invalid and replaced code points are the browsers'
    return html.unescape(f"&{ref}" if ref.endswith(";") else f"&{ref};")
