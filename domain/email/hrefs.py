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

_SPACE = re.compile(r"[\t\n\f\r ]*")
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r /=>]*")  # a first "=" belongs to the name
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_CONDITIONAL = re.compile(r"\[if\b[^\]]*\]>", re.IGNORECASE)  # what follows <!-- in Outlook's comments
# elements whose content is text up to their end tag (RCDATA, RAWTEXT, script data, plaintext)
_RAW = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})
_RAW_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW}
_LINKS = frozenset({"a", "area"})


class Href(NamedTuple):
    start: int  # the value's span in the document, quotes excluded
    end: int
    quote: str  # '"', "'" or "" (unquoted)


def _tag(s: str, i: int, n: int) -> tuple[str, int, Href | None] | None:
    """The start or end tag whose name begins at ``i``: (lower-case name, index after ``>``, its first
    href); None if the document (``s[:n]``) ends inside it: a browser drops such a tag."""
    j = _TAG_NAME.match(s, i, n).end()
    name, href = s[i:j].lower(), None
    while True:
        j = _SPACE.match(s, j, n).end()
        if j >= n:
            return None
        c = s[j]
        if c == ">":
            return name, j + 1, href
        if c == "/":
            j += 1
            continue
        m = _ATTR_NAME.match(s, j, n)
        attr, j = m.group().lower(), _SPACE.match(s, m.end(), n).end()
        if j >= n:
            return None
        if s[j] != "=":
            continue  # no value: the next attribute, "/" or ">"
        j = _SPACE.match(s, j + 1, n).end()
        if j >= n:
            return None
        q = s[j]
        if q in "\"'":
            end = s.find(q, j + 1, n)
            if end < 0:
                return None
            value, j = Href(j + 1, end, q), end + 1
        elif q == ">":
            value = Href(j, j, "")  # "href=>": an empty value
        else:
            end = _UNQUOTED.match(s, j, n).end()
            value, j = Href(j, end, ""), end
        if attr == "href" and href is None:  # a repeated attribute is dropped: the first one counts
            href = value


def link_hrefs(s: str, start: int = 0, stop: int | None = None, *, outer: bool = True) -> Iterator[Href]:
    """The href spans of the links in ``s[start:stop]``, in document order."""
    stop = len(s) if stop is None else stop
    i = start
    while (i := s.find("<", i, stop)) >= 0:
        nxt = s[i + 1 : min(i + 2, stop)]
        if nxt.isascii() and nxt.isalpha():
            tag = _tag(s, i + 1, stop)
            if tag is None:
                return
            name, i, href = tag
            if href is not None and (name in _LINKS or name.startswith("v:")):
                yield href
            if name == "plaintext":
                return
            if name in _RAW:  # its content is text up to "</name" then a space, "/" or ">"
                close = _RAW_END[name].search(s, i, stop)
                if close is None:
                    return
                i = close.start()
        elif nxt == "/":
            after = s[i + 2 : min(i + 3, stop)]
            if after.isascii() and after.isalpha():
                tag = _tag(s, i + 2, stop)  # attributes of an end tag are lexed (and ignored) alike
                if tag is None:
                    return
                i = tag[1]
            else:  # "</>" is dropped, anything else is a bogus comment up to ">"
                i = _past(s, ">", i + 2, stop)
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
