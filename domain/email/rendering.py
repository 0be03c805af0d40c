"""Rendering marketer-written templates in Jinja2's immutable sandbox.

Templates are untrusted code: the sandbox blocks attribute tricks (``__class__``, ``mro``) and the
immutable variant also blocks mutating the context. Missing variables render empty so one customer
without a trait does not break a campaign; use ``{{ traits.first_name | default("there") }}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from domain.errors import InvalidInput

_html_env = ImmutableSandboxedEnvironment(autoescape=True)
_text_env = ImmutableSandboxedEnvironment(autoescape=False)


class RenderError(Exception):
    """A template failed for this one message (bad data, blocked operation). Not retryable."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str | None


def check_syntax(parts: dict[str, str | None]) -> None:
    """Compile each part; a syntax error becomes a 422 naming the part and the line."""
    for field, source in parts.items():
        if source is None:
            continue
        env = _html_env if field == "html" else _text_env
        try:
            env.parse(source)
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                {"field": field, "line": exc.lineno, "problem": f"template syntax error: {exc.message}"},
                code="template_syntax_error",
            ) from exc


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool):
    return (_html_env if html else _text_env).from_string(source)


def render(subject: str, html: str, text: str | None, context: dict[str, Any]) -> RenderedEmail:
    try:
        rendered_subject = _compiled(subject, False).render(context).strip()
        rendered_html = _compiled(html, True).render(context)
        rendered_text = _compiled(text, False).render(context) if text is not None else None
    except SecurityError as exc:
        raise RenderError(f"template used a blocked operation: {exc}") from exc
    except Exception as exc:  # any template runtime error fails this message only
        raise RenderError(f"template failed to render: {type(exc).__name__}: {exc}") from exc
    if any(ch in rendered_subject for ch in "\r\n\x00"):
        raise RenderError("rendered subject contains a line break or NUL; refusing to send")
    return RenderedEmail(subject=rendered_subject, html=rendered_html, text=rendered_text)


def context_for(customer: dict[str, Any], event: dict[str, Any] | None) -> dict[str, Any]:
    """The variables a template sees: ``customer``, ``traits``, ``event`` and ``properties``."""
    event = event or {}
    return {
        "customer": customer,
        "traits": customer.get("traits") or {},
        "event": event,
        "properties": event.get("properties") or {},
    }
