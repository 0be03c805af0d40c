"""CSS from a template's own ``<style>`` blocks, inlined once per template version instead of per message.

Mail clients ignore ``<style>``, so its rules are copied into ``style`` attributes (css_inline). Doing
that to every rendered message costs as much as rendering it. Instead the template's *source* is
inlined: every Jinja construct is swapped for an inert placeholder, the page (layout and body) goes
through the inliner once, and the constructs are put back; each message then renders the inlined
source. That gives the same styles as inlining the rendered message whenever the CSS cannot tell two
renders apart. When it could, the source is left alone and each message is inlined as before:

- the ``<style>`` contains Jinja (the rules themselves vary);
- a selector depends on structure or attributes a render can change (``:nth-child``, ``+``, ``[href]``,
  ``:not(...)``...), or a construct sits in a ``class``, ``id`` or ``style`` attribute, a tag or an
  attribute name;
- a statement (``{% if %}``, ``{% for %}``...) opens or closes elements unevenly, or sits where HTML
  moves text out of place (directly inside a table);
- the inliner did not hand every placeholder back exactly once, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = "JRNYJINJA{:05d}X"
_PLACEHOLDER_RE = re.compile(r"JRNYJINJA(\d{5})X")
_BODY_START, _BODY_END = "JRNYSENTINELBODYSTARTX", "JRNYSENTINELBODYENDX"
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
# selectors whose matches a render can change (structure, siblings, attributes, negation)
_DYNAMIC_SELECTOR = re.compile(r":(?:nth|first|last|only)-|:empty|:not\(|:has\(|:is\(|:where\(|[+~\[]")
_STATEMENT = re.compile(r"\{%[-+]?\s*(\w+)")
_OPENERS = {"if", "for", "with", "filter", "macro", "call", "autoescape", "raw", "block"}
_MIDDLES = {"elif", "else"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# where the HTML parser moves text (and so a placeholder) somewhere else
_TABLE_CONTEXT = {"table", "thead", "tbody", "tfoot", "tr", "colgroup", "select"}
_STYLE_ATTRIBUTES = {"class", "id", "style"}


@dataclass(frozen=True)
class Inlined:
    body: str  # the template source with the CSS in style attributes
    skeleton: str  # the layout, with the template's CSS applied to it too


def inline_source(source: str, skeleton: str, body_marker: str, inline) -> Inlined | None:
    """The template source and layout skeleton with the source's CSS inlined, or None when that would
    not give what inlining each rendered message gives (see the module's rules)."""
    if "JRNYJINJA" in source or _BODY_START in source or _BODY_END in source:
        return None
    constructs = [m.group(0) for m in _CONSTRUCT.finditer(source)]
    for css in _STYLE.findall(source):
        if _CONSTRUCT.search(css) or _DYNAMIC_SELECTOR.search(_without_strings(css)):
            return None
    counter = iter(range(len(constructs)))
    protected = _CONSTRUCT.sub(lambda _: _PLACEHOLDER.format(next(counter)), source)
    if not _placeholders_are_inert(protected, constructs):
        return None
    page = skeleton.replace(body_marker, f"{_BODY_START}{protected}{_BODY_END}")
    try:
        out = inline(page)
    except Exception:  # CSS the inliner cannot take: each message tries (and reports) it
        return None
    start, end = out.find(_BODY_START), out.find(_BODY_END)
    if start < 0 or end < start or out.count(_BODY_START) != 1 or out.count(_BODY_END) != 1:
        return None
    body = out[start + len(_BODY_START) : end]
    found = [int(n) for n in _PLACEHOLDER_RE.findall(body)]
    if found != list(range(len(constructs))) or _PLACEHOLDER_RE.search(out[:start] + out[end:]):
        return None
    return Inlined(
        body=_PLACEHOLDER_RE.sub(lambda m: constructs[int(m.group(1))], body),
        skeleton=out[:start] + body_marker + out[end + len(_BODY_END) :],
    )


def _without_strings(css: str) -> str:
    return re.sub(r"\"[^\"]*\"|'[^']*'", "", re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL))


def _placeholders_are_inert(protected: str, constructs: list[str]) -> bool:
    checker = _PlaceholderContexts(constructs)
    try:
        checker.feed(protected)
        checker.close()
    except _Unsafe:
        return False
    return not checker.blocks


class _Unsafe(Exception):
    pass


class _PlaceholderContexts(HTMLParser):
    """Walks the protected source: where does each placeholder sit, and do statements nest with the
    elements around them?"""

    def __init__(self, constructs: list[str]):
        super().__init__(convert_charrefs=False)
        self._constructs = constructs
        self.elements: list[str] = []
        self.blocks: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag, attrs):
        self._check_tag(tag, attrs)
        if tag not in _VOID:
            self.elements.append(tag)

    def handle_startendtag(self, tag, attrs):
        self._check_tag(tag, attrs)

    def handle_endtag(self, tag):
        if _PLACEHOLDER_RE.search(tag):
            raise _Unsafe
        if tag in self.elements:
            while self.elements.pop() != tag:
                pass

    def handle_data(self, data):
        for match in _PLACEHOLDER_RE.finditer(data):
            construct = self._constructs[int(match.group(1))]
            if construct.startswith("{%") and self.elements and self.elements[-1] in _TABLE_CONTEXT:
                raise _Unsafe  # HTML moves it out of the table, away from the rows it wraps
            self._statement(construct)

    def handle_comment(self, data):
        pass  # placeholders inside comments come back in order or the result is refused

    def _check_tag(self, tag, attrs):
        if _PLACEHOLDER_RE.search(tag):
            raise _Unsafe
        for name, value in attrs:
            if _PLACEHOLDER_RE.search(name) or (
                value and _PLACEHOLDER_RE.search(value) and name in _STYLE_ATTRIBUTES
            ):
                raise _Unsafe
            for match in _PLACEHOLDER_RE.finditer(value or ""):
                if self._constructs[int(match.group(1))].startswith("{%"):
                    raise _Unsafe  # a statement inside a tag can add or drop attributes

    def _statement(self, construct: str) -> None:
        match = _STATEMENT.match(construct)
        if match is None:
            return  # an expression or a comment
        keyword, here = match.group(1), tuple(self.elements)
        if keyword in _OPENERS or (keyword == "set" and "=" not in construct):
            self.blocks.append((keyword, here))
        elif keyword in _MIDDLES or keyword.startswith("end"):
            if not self.blocks or self.blocks[-1][1] != here:
                raise _Unsafe
            if keyword.startswith("end"):
                self.blocks.pop()
        elif keyword != "set":
            raise _Unsafe  # not a statement we know how elements nest around
