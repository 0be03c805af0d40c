"""The Jinja2 environment marketer templates run in: untrusted code under a budget.

Jinja's immutable sandbox already refuses ``__class__``-style attribute walks and context mutation.
On top of it we
- keep only harmless globals (``range`` with a deadline, ``dict``), so ``cycler``/``lipsum``/``self``
  tricks find nothing to print;
- refuse to print anything but plain data (no functions, classes, macros, loop objects);
- cap ``*`` and ``**`` so ``'a' * 10**9`` or ``9**9**9`` fail at once instead of eating the worker;
- check a deadline and an output budget while rendering (``Budget``): a slow or huge template stops
  with a clear error for that one message.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.compiler import CodeGenerator
from jinja2.filters import do_format
from jinja2.runtime import Context, markup_join, new_context, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 1.0
MAX_RANGE = 10_000
MAX_OPERAND = 100_000  # largest string/list length or power result a template may build

# Printing any of these means the template reached into Python objects: never send that.
INTERNALS = re.compile(
    r"<(?:class|function|built-in|bound method|method|module|Macro|TemplateReference|LoopContext|"
    r"jinja2\.|generator|coroutine|slot wrapper|method-wrapper|property|cell|frame|code)\b"
    r"| object at 0x|__[A-Za-z]\w*__"
)


class RenderLimitExceeded(SecurityError):
    """The template ran past its time or output budget."""


class Budget:
    """Deadline and output cap of one render, checked from the hooks below."""

    def __init__(self, seconds: float = MAX_RENDER_SECONDS, chars: int = MAX_OUTPUT_CHARS):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.chars = chars
        self.used = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"rendering took longer than {self.seconds:g}s; template stopped")


_SCALARS = (str, int, float, bool, Decimal, date, datetime, Undefined)


def _plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, _SCALARS):
        return True
    if depth > 8:
        return False
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _refuse_objects(value: Any) -> Any:
    if type(value) is not str and not _plain(value):  # runs on every value printed: str first
        raise SecurityError(f"templates can only print data, not a {type(value).__name__}")
    return value


def _safe_string(value: Any) -> str:
    return str(_refuse_objects(value))


def _safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
    for arg in (value, *args, *kwargs.values()):
        _refuse_objects(arg)
    return do_format(value, *args, **kwargs)


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        # '~' goes through the environment, which refuses to stringify objects (macros, loop, types)
        self.write("environment.concat(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_DICT_ATTRIBUTES = frozenset(dir(dict))


class TemplateSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})
    code_generator_class = _CodeGenerator

    def __init__(self, *, autoescape: bool):
        super().__init__(autoescape=autoescape, finalize=_refuse_objects)
        self.globals = {"range": self._range, "dict": dict}
        for name in ("pprint", "xmlattr", "attr"):  # nothing a marketer needs; handy for probing
            self.filters.pop(name, None)
        self.filters["string"] = _safe_string
        self.filters["format"] = _safe_format

    def _range(self, *args: int):
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise SecurityError(f"range() is limited to {MAX_RANGE} items")
        budget = _CURRENT.budget
        for i, n in enumerate(numbers):
            if budget is not None and i % 64 == 0:
                budget.tick()
            yield n

    def concat(self, eval_ctx, values: tuple) -> str:
        for value in values:
            _refuse_objects(value)
        return (markup_join if eval_ctx.autoescape else str_join)(values)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja returns a silent Undefined here; we fail the render so probing is visible.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            result = left**right
            if isinstance(result, int) and result.bit_length() > 256:
                raise SecurityError("number too large")
            return result
        # '*': repeated strings/lists must stay small
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_OPERAND:
                raise SecurityError(f"'*' would build more than {MAX_OPERAND} items")
        return left * right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if _CURRENT.budget is not None:
            _CURRENT.budget.tick()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if _CURRENT.budget is not None:
            _CURRENT.budget.tick()
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            # ``traits.first_name``: what Jinja ends up doing for a key of a plain dict, without
            # first failing to find an attribute of that name (an exception per lookup)
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class _Current(threading.local):
    """The budget of the render running now (a render is synchronous: one per thread at a time)."""

    budget: Budget | None = None


_CURRENT = _Current()


def render_with_budget(template, variables: dict[str, Any], budget: Budget) -> str:
    """Stream the template so the size and time caps apply while it runs, not after.

    ``variables`` must already hold the environment's globals (``with_globals``): the context is made
    over it as is, instead of Jinja merging globals into a fresh copy for every part of every message.
    """
    _CURRENT.budget = budget
    try:
        parts: list[str] = []
        append = parts.append
        cap = budget.chars - budget.used
        # the render function itself, not Template.generate: its wrapper only rewrites tracebacks, and
        # this loop runs for every chunk of every message of a broadcast
        context = new_context(template.environment, template.name, template.blocks, variables, shared=True)
        for chunk in template.root_render_func(context):
            cap -= len(chunk)
            if cap < 0:
                raise RenderLimitExceeded(f"rendered output is larger than {budget.chars} characters")
            append(chunk)
            if not len(parts) & 31:  # the clock every 32 chunks
                budget.tick()
        budget.used = budget.chars - cap
        return "".join(parts)
    finally:
        _CURRENT.budget = None


def with_globals(env: TemplateSandbox, context: dict[str, Any]) -> dict[str, Any]:
    """The variables of one render: the sandbox's few globals, then the context (which wins)."""
    return {**env.globals, **context}


def blocked_constructs(ast: nodes.Template) -> list[str]:
    """Things a template may not contain at all, found at save time."""
    problems = []
    for node in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        problems.append(f"'{type(node).__name__.lower()}' is not available in email templates")
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Const)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            problems.append(f"attribute {node.attr!r} is not allowed")
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "__" in node.value:
            problems.append("strings containing '__' are not allowed")
        elif isinstance(node, nodes.Name) and node.name == "self" and node.ctx == "load":
            problems.append("'self' is not available in email templates")
    return sorted(set(problems))
