"""Rendering marketer-written templates: sandboxed body, trusted layout, inlined CSS, derived text.

Templates are untrusted code (see ``domain.email.sandbox``). At save time ``check_template`` reports
syntax errors, blocked constructs and unknown variables; at render time a failing template raises
``RenderError`` for that one message. Missing *values* render empty so one customer without a trait does
not break a campaign; use ``{{ traits.first_name | default("there") }}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import css_inline
from jinja2 import Environment, FileSystemLoader, TemplateSyntaxError, meta, select_autoescape
from markupsafe import Markup, escape

from domain.email import formatting, inlining
from domain.email.sandbox import (
    INTERNALS,
    Budget,
    TemplateSandbox,
    blocked_constructs,
    oversized_constructs,
    render_with_budget,
    with_globals,
)
from domain.errors import InvalidInput

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
LAYOUTS = ("base",)

# The variables a template may use; anything else is reported at save time.
VARIABLES = frozenset(
    {"customer", "traits", "event", "properties", "journey", "unsubscribe_url", "preferences_url"}
    | {"range", "dict", "loop"}
)

_html_env = TemplateSandbox(autoescape=True)
_text_env = TemplateSandbox(autoescape=False)
# Our own layouts are trusted code: a normal environment, autoescaped.
_layouts = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=False,
)
_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


class RenderError(Exception):
    """A template failed for this one message (bad data, blocked operation, over budget). Not retryable.
    ``part`` and ``line`` say where, when known."""

    def __init__(self, message: str, *, part: str | None = None, line: int | None = None):
        where = f" ({part}, line {line})" if part and line else f" ({part})" if part else ""
        super().__init__(message + where)
        self.part, self.line = part, line


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class Footer(NamedTuple):  # one per message: a tuple is the cheapest record to build
    """What the layout's footer shows; ``unsubscribe_url`` is None for transactional email."""

    sender_name: str
    postal_address: str | None
    unsubscribe_url: str | None = None
    preferences_url: str | None = None
    group_name: str | None = None

    def skeleton_key(self) -> tuple:
        return (self.sender_name, self.postal_address, self.group_name, self.unsubscribe_url is not None)


def check_template(parts: dict[str, str | None], prefix: str = "") -> None:
    """Compile each part; report syntax errors, blocked constructs and unknown variables as a 422."""
    for field, source in parts.items():
        if source is None:
            continue
        env = _html_env if field == "html" else _text_env
        name = f"{prefix}{field}"
        try:
            ast = env.parse(source)
            env.compile(source)  # also finds unknown filters and tests
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                {"field": name, "line": exc.lineno, "problem": f"template syntax error: {exc.message}"},
                code="template_syntax_error",
            ) from exc
        except _TOO_DEEP as exc:
            raise InvalidInput(
                {"field": name, "problem": NESTED_TOO_DEEPLY}, code="template_too_deep"
            ) from exc
        blocked = blocked_constructs(ast) + oversized_constructs(ast) + formatting.unreadable_arguments(ast)
        if blocked:
            raise InvalidInput({"field": name, "problem": "; ".join(blocked)}, code="template_blocked")
        unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
        if unknown:
            raise InvalidInput(
                {
                    "field": name,
                    "problem": f"unknown variable(s): {', '.join(unknown)}; "
                    f"available: {', '.join(sorted(VARIABLES - {'range', 'dict', 'loop'}))}",
                },
                code="template_unknown_variable",
            )


# Jinja's parser and compiler recurse once per level of nesting, and Python refuses the generated code
# past its own limits (e.g. 20 nested loops: "too many statically nested blocks", a SyntaxError).
_TOO_DEEP = (RecursionError, SyntaxError, MemoryError)
NESTED_TOO_DEEPLY = "the template is nested too deeply (brackets, if or for blocks); simplify it"


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool):
    try:
        return (_html_env if html else _text_env).from_string(source)
    except TemplateSyntaxError:
        raise
    except _TOO_DEEP as exc:
        raise RenderError(NESTED_TOO_DEEPLY) from exc


class _Failed(Exception):
    """A part failed to render: the error, and the line of the template it failed on."""

    def __init__(self, error: Exception, line: int | None):
        super().__init__(error)
        self.error, self.line = error, line


def _line_of(template, error: Exception) -> int | None:
    """The template line the error was raised on: render_with_budget runs the compiled code directly,
    so the traceback still holds its frames (filename ``<template>``), which Jinja maps back to lines."""
    line, tb = None, error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _run(source: str, html: bool, context: dict[str, Any], budget: Budget) -> str:
    template = _compiled(source, html)
    try:
        out = render_with_budget(template, context, budget)
    except Exception as exc:
        raise _Failed(exc, _line_of(template, exc)) from exc
    if INTERNALS.search(out):
        raise RenderError("template output exposes internal objects; refusing to send")
    return out


def render(
    subject: str,
    html: str,
    text: str | None,
    context: dict[str, Any],
    *,
    layout: str | None = "base",
    footer: Footer | None = None,
    lang: str = "en",
    budget: Budget | None = None,
    links: Callable[[str], str] | None = None,
    locality: formatting.Locality | None = None,
) -> RenderedEmail:
    """Render one message. Every failure of the template becomes a ``RenderError``. ``links`` rewrites
    the links of the rendered body (click tracking); the layout's own links are never tracked.
    ``locality`` is the customer's locale and zone, for the formatting filters (default: en, UTC)."""
    budget = budget or Budget()
    context = with_globals(_html_env, context)  # once for the three parts
    if locality is not None:
        context[formatting.LOCALITY] = locality
    footer = footer or Footer(sender_name="", postal_address=None)
    body_source, skeleton = _styled(html, layout, lang, footer.skeleton_key())
    part = "subject"
    try:
        # stripped, never rewritten: a line break inside it is refused by compose, not joined away
        rendered_subject = _run(subject, False, context, budget).strip(" ")
        part = "html"
        body = _run(body_source, True, context, budget)
        # no text part: one derived once from the HTML template, rendered like the others
        part = "text"
        rendered_text = _run(text if text is not None else _derived_text(html), False, context, budget)
    except RenderError:
        raise
    except Exception as exc:  # blocked operation, over budget, bad data: this message fails, not the worker
        error, line = (exc.error, exc.line) if isinstance(exc, _Failed) else (exc, None)
        if (part == "html" and body_source != html) or (part == "text" and text is None):
            line = None  # the source run was rewritten (CSS inlined, text derived): its lines are not theirs
        raise RenderError(f"template failed to render: {error}", part=part, line=line) from error
    if not rendered_subject:
        raise RenderError("the rendered subject is empty")
    if links is not None:
        body = links(body)
    page = _fill(skeleton, body, rendered_subject, footer, True) if skeleton is not None else body
    if "<style" in body:  # CSS that could not be inlined in the source: inline this message (slow)
        page = _inliner.inline(page)
    rendered_text = (
        rendered_text.strip() + "\n" + _fill(_text_skeleton(footer.skeleton_key()), "", "", footer, False)
    )
    return RenderedEmail(subject=rendered_subject, html=page, text=rendered_text.strip() + "\n")


# Layout + footer are the same for every recipient of a template except for a few values, so they are
# rendered and CSS-inlined once with sentinels, and each message fills the sentinels in.
_BODY, _SUBJECT, _UNSUB, _PREFS = (f"JRNYSENTINEL{n}X" for n in ("BODY", "SUBJECT", "UNSUB", "PREFS"))


def _sentinel_footer(key: tuple) -> dict[str, Any]:
    sender_name, postal_address, group_name, marketing = key
    return {
        "sender_name": sender_name,
        "postal_address": postal_address,
        "group_name": group_name,
        "unsubscribe_url": _UNSUB if marketing else None,
        "preferences_url": _PREFS if marketing else None,
    }


@lru_cache(maxsize=256)
def _html_skeleton(layout: str, lang: str, key: tuple) -> str:
    page = _layouts.get_template(f"layouts/{layout}.html").render(
        body=Markup(_BODY),  # noqa: S704 - a constant sentinel, replaced by the sandboxed body
        subject=_SUBJECT,
        lang=lang,
        **_sentinel_footer(key),
    )
    return _inliner.inline(page) if "<style" in page else page


@lru_cache(maxsize=256)
def _styled(html: str, layout: str | None, lang: str, key: tuple) -> tuple[str, str | None]:
    """The body source to render and the skeleton to put it in: with the template's own CSS already
    inlined into both when that can be done once for every message (``inlining``)."""
    skeleton = _html_skeleton(layout, lang, key) if layout is not None else None
    if "<style" not in html:
        return html, skeleton
    inlined = inlining.inline_source(html, skeleton or _BODY, _BODY, _inliner.inline)
    if inlined is None:
        return html, skeleton
    return inlined.body, inlined.skeleton


@lru_cache(maxsize=256)
def _text_skeleton(key: tuple) -> str:
    return _layouts.get_template("layouts/footer.txt").render(**_sentinel_footer(key))


def _fill(skeleton: str, body: str, subject: str, footer: Footer, html: bool) -> str:
    quote = escape if html else str
    return (
        skeleton.replace(_SUBJECT, quote(subject))
        .replace(_UNSUB, quote(footer.unsubscribe_url or ""))
        .replace(_PREFS, quote(footer.preferences_url or ""))
        .replace(_BODY, body)
    )


def context_for(
    customer: dict[str, Any],
    event: dict[str, Any] | None,
    *,
    journey: dict[str, Any] | None = None,
    unsubscribe_url: str | None = None,
    preferences_url: str | None = None,
) -> dict[str, Any]:
    """The variables a template sees (``VARIABLES``)."""
    event = event or {}
    return {
        "customer": customer,
        "traits": customer.get("traits") or {},
        "event": event,
        "properties": event.get("properties") or {},
        "journey": journey or {},
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


def pick_variant(variants: dict[str, dict[str, Any]] | None, locale: str | None) -> dict[str, Any] | None:
    """The variant for ``locale``: exact tag first (``pt-BR``), then its language (``pt``)."""
    key = variant_locale(variants, locale)
    return None if key is None else variants[key]


def variant_locale(variants: dict[str, Any] | None, locale: str | None) -> str | None:
    """The key (a locale) of the variant ``pick_variant`` chooses, as it was saved."""
    if not variants or not locale:
        return None
    wanted = locale.replace("_", "-").lower()
    lowered = {k.replace("_", "-").lower(): k for k in variants}  # saved as pt_BR or pt-BR
    return lowered.get(wanted) or lowered.get(wanted.split("-")[0])


_SPACES = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"style", "script", "head", "title"})
    _BREAK = frozenset(
        {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "table", "hr"}
    )
    # a new line before them only: rows and list items without blank lines between, <br/> as <br>
    _LINE = frozenset({"br", "hr", "tr", "li"})
    _CELL = frozenset({"td", "th"})
    _SHOWN = ("http://", "https://", "mailto:", "tel:", "{{")  # links whose target the reader can use

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._href: list[tuple[str | None, int]] = []  # each open link: its href, where its text starts

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BREAK:
            self.out.append("\n")
        elif tag in self._CELL:
            self.out.append(" ")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self._href.append((dict(attrs).get("href"), len(self.out)))

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BREAK and tag not in self._LINE:
            self.out.append("\n")
        if tag == "a" and self._href:
            href, start = self._href.pop()
            shown = href and href.lower().startswith(self._SHOWN)
            if shown and "".join(self.out[start:]).strip() != href:  # not twice when the text is the URL
                self.out.append(f" ({href})")

    def handle_data(self, data):
        if not self._skip:  # runs of white space become one space, kept at the edges: "Hello <b>Ann</b>"
            self.out.append(_SPACES.sub(" ", data))


@lru_cache(maxsize=256)
def _derived_text(html_source: str) -> str:
    """A text template derived once from the HTML template (Jinja tags pass through as text)."""
    return html_to_text(html_source)


def html_to_text(html: str) -> str:
    """A readable plain-text part for templates that only have HTML."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).splitlines()]
    text, blank = [], False
    for line in lines:
        if line or not blank:
            text.append(line)
        blank = not line
    return "\n".join(text).strip()
