"""The Jinja2 environment marketer templates run in: untrusted code under a budget.

Jinja's immutable sandbox already refuses ``__class__``-style attribute walks and context mutation.
On top of it we
- keep only harmless globals (``range`` with a deadline, ``dict``), so ``cycler``/``lipsum``/``self``
  tricks find nothing to print;
- refuse to print anything but plain data (no functions, classes, macros, loop objects);
- cap ``*`` and ``**`` so ``'a' * 10**9`` or ``9**9**9`` fail at once instead of eating the worker;
- bound, *before* the call, the size of every string a filter, operator or str method can build from a
  small input: widths and counts (``center``, ``indent``, ``format``, ``%``, ``str.format``, ``ljust``,
  ``zfill``, ``batch`` ...) and joins/replacements. One Python call is one filter, so a deadline alone
  cannot stop ``'a'|center(999999999)``: the allocation is the damage. Every string built counts
  against the render's ``Budget`` too, so keeping many large ones fails as well;
- never run template code at compile time (``optimized=False``: Jinja's optimizer would evaluate
  constant filter calls while the template is saved, outside any budget); instead
  ``oversized_constructs`` reports constant arguments past the caps when the template is saved;
- check a time and an output budget while rendering (``Budget``): a slow or huge template stops
  with a clear error for that one message. The time is the template's own CPU time, so a busy machine
  never fails a message a quiet one would send.
"""

from __future__ import annotations

import gc
import re
import threading
import time
import types
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Decimal
from functools import update_wrapper, wraps
from string import Formatter
from typing import Any

from jinja2 import ChainableUndefined, Undefined, nodes, pass_environment, pass_eval_context
from jinja2.compiler import CodeGenerator
from jinja2.filters import (
    do_batch,
    do_center,
    do_default,
    do_format,
    do_indent,
    do_replace,
    do_wordwrap,
    make_attrgetter,
    sync_do_join,
    sync_do_slice,
)
from jinja2.runtime import Context, markup_join, new_context, str_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from markupsafe import Markup

from domain.email import formatting

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 1.0
MAX_RANGE = 10_000
MAX_OPERAND = 100_000  # largest string/list length or power result a template may build
MAX_BUILT_CHARS = 10 * MAX_OUTPUT_CHARS  # all the strings one render may build, kept or not

# Printing any of these means the template reached into Python objects: never send that.
INTERNALS = re.compile(
    r"<(?:class|function|built-in|bound method|method|module|Macro|TemplateReference|LoopContext|"
    r"jinja2\.|generator|coroutine|slot wrapper|method-wrapper|property|cell|frame|code)\b"
    r"| object at 0x|__[A-Za-z]\w*__"
)


class RenderLimitExceeded(SecurityError):
    """The template ran past its time or output budget."""


class Budget:
    """Time and output cap of one render, checked from the hooks below.

    The time is the CPU time the rendering thread spends on the template, not the wall clock: a render
    that fails here fails its message for good (not retried), so it must depend on the template, never
    on the machine. Under load the thread waits for a core, for the interpreter lock other renders or
    the event loop hold, or for a full garbage collection that scans the whole heap; none of that is the
    template's doing. The wall clock is only the cheap first check (a thread cannot spend more CPU time
    than time passes): past it, the thread's own CPU time decides. Create it in the thread that renders.
    """

    def __init__(self, seconds: float = MAX_RENDER_SECONDS, chars: int = MAX_OUTPUT_CHARS):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.chars = chars
        self.used = 0
        self.built = 0
        self.started = time.thread_time()
        self.excused = 0.0  # CPU time of full garbage collections during the render
        self.collecting_since: float | None = None

    def spent(self) -> float:
        return time.thread_time() - self.started - self.excused

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            left = self.seconds - self.spent()
            if left <= 0:
                raise RenderLimitExceeded(f"rendering took longer than {self.seconds:g}s; template stopped")
            self.deadline = time.monotonic() + left

    def build(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT_CHARS:
            raise RenderLimitExceeded(f"the template built more than {MAX_BUILT_CHARS} characters of text")
        self.tick()


def _excuse_full_collections(phase: str, info: dict[str, int]) -> None:
    """Keep the interpreter's full collections (their cost is the whole heap's size, whatever the
    template does) out of the render's time; young collections stay in: the template's allocations
    make them."""
    if info["generation"] != 2:
        return
    budget = _CURRENT.budget  # collections run in the thread that triggered them
    if budget is None:
        return
    if phase == "start":
        budget.collecting_since = time.thread_time()
    elif budget.collecting_since is not None:
        budget.excused += time.thread_time() - budget.collecting_since
        budget.collecting_since = None


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


def _print(value: Any) -> Any:
    """What ``{{ ... }}`` prints: a null (a trait sent as null, a customer without an address) prints
    nothing, as a missing value does, never the word "None" in front of a customer."""
    return "" if value is None else _refuse_objects(value)


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default``, also for a null: ``traits.first_name | default("friend")`` greets a
    customer whose first name was sent as null as it greets one who never sent it."""
    return default_value if value is None else do_default(value, default_value, boolean)


def _safe_string(value: Any) -> str:
    return "" if value is None else str(_refuse_objects(value))


# Filters that turn their value into text: a null reads as the empty text a missing value gives, so
# ``traits.first_name | capitalize`` greets a customer whose name was sent as null with "", not "None".
_TEXT_FILTERS = (
    "capitalize", "title", "upper", "lower", "trim", "striptags", "truncate", "wordwrap", "wordcount",
    "center", "indent", "replace", "urlencode", "escape", "e", "forceescape",
)  # fmt: skip


def _null_is_empty(f: Any) -> Any:
    at = 1 if hasattr(f, "jinja_pass_arg") else 0  # after the context a filter asks for

    @wraps(f)  # keeps jinja_pass_arg
    def text_filter(*args: Any, **kwargs: Any) -> Any:
        if len(args) > at and args[at] is None:
            args = (*args[:at], "", *args[at + 1 :])
        return f(*args, **kwargs)

    return text_filter


# -- sizes of what string builders would make, checked before they run ---------------------------------


def _reserve(size: int, limit: int = MAX_OPERAND, what: str = "text") -> None:
    """Refuse to build more than ``limit`` characters (items) at once; count it in the render's budget."""
    if size > limit:
        raise SecurityError(f"that would build {what} longer than {limit} characters")
    budget = _CURRENT.budget
    if budget is not None:
        budget.build(size)


def _count(value: Any, what: str) -> int:
    """A width or count argument as an int, refusing huge ones without building anything."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0  # not a number: the builder itself raises its usual TypeError
    if value > MAX_OPERAND:
        raise SecurityError(f"{what} {value} is larger than the limit of {MAX_OPERAND}")
    return max(value, 0)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else len(str(value))


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _printf_size(fmt: str, args: Any) -> int:
    """An upper bound of what ``fmt % args`` pads to (widths and precisions): ``'%0999999999d'``."""
    positional = args if isinstance(args, tuple) else (args,)
    used, total = 0, len(fmt)
    for match in _PRINTF.finditer(fmt):
        width, precision, kind = match.groups()
        if kind == "%":
            continue
        for part in (width, precision):
            if part == "*":
                total += _count(positional[used] if used < len(positional) else 0, "a '*' width of")
                used += 1
            elif part:
                if len(part) > 6:
                    raise SecurityError(f"a format width of {part[:12]}... is larger than {MAX_OPERAND}")
                total += int(part)
        used += 1
    return total


def _printf(fmt: Any, args: Any) -> None:
    if isinstance(fmt, str):
        values = args if isinstance(args, tuple) else (args,)
        size = _printf_size(fmt, args) + sum(_length(v) for v in values if isinstance(v, str))
        _reserve(size, what="formatted text")


def _safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
    for arg in (value, *args, *kwargs.values()):
        _refuse_objects(arg)
    _printf(value, kwargs or args)
    return do_format(value, *args, **kwargs)


def _safe_center(value: Any, width: int = 80) -> str:
    _reserve(max(_length(value), _count(width, "a width of")))
    return do_center(value, width)


def _safe_indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    step = _length(width) if isinstance(width, str) else _count(width, "an indent of")
    _reserve(len(text) + (text.count("\n") + 1) * step)
    return do_indent(s, width, first, blank)


@pass_environment
def _safe_wordwrap(
    environment,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    joint = len(wrapstring if wrapstring is not None else environment.newline_sequence)
    if isinstance(width, int) and width > 0:
        _reserve(len(text) + (len(text) // width + text.count("\n") + 1) * joint)
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _joined_size(separator: Any, items: list) -> int:
    return _length(separator) * max(len(items) - 1, 0) + sum(
        len(x) if isinstance(x, str | bytes) else 0 for x in items
    )


@pass_eval_context
def _safe_join(eval_ctx, value: Any, d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    items = ["" if item is None else item for item in value]  # a null prints nothing here too
    _reserve(_joined_size(d, items))
    return sync_do_join(eval_ctx, items, d)


def _replaced_size(s: Any, old: Any, new: Any, count: Any) -> int:
    text, old, new = str(s), str(old), str(new)
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


@pass_eval_context
def _safe_replace(eval_ctx, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _reserve(_replaced_size(s, old, new, count))
    return do_replace(eval_ctx, s, old, new, count)


def _safe_batch(value: Any, linecount: int, fill_with: Any = None):
    _count(linecount, "a batch size of")
    return do_batch(value, linecount, fill_with)


def _safe_slice(value: Any, slices: int, fill_with: Any = None):
    _count(slices, "a number of slices of")
    return sync_do_slice(value, slices, fill_with)


# The str (and bytes) methods that can build far more than their input, and the size they would build.
def _padded(s, width=0, *_):
    return max(len(s), _count(width, "a width of"))


def _tabs(s, tabsize=8):
    return len(s) + s.count("\t" if isinstance(s, str) else b"\t") * _count(tabsize, "a tab size of")


def _translated(s, table):
    values = table.values() if isinstance(table, dict) else ()
    longest = max((len(v) for v in values if isinstance(v, str | bytes)), default=1)
    return len(s) * max(longest, 1)


_METHOD_SIZES = {
    "center": _padded,
    "ljust": _padded,
    "rjust": _padded,
    "zfill": _padded,
    "expandtabs": _tabs,
    "replace": lambda s, old, new, count=-1: (
        _replaced_size(s, old, new, count)
        if isinstance(s, str)
        else len(s) + (len(s) + 1 if not old else s.count(old)) * max(len(new) - len(old), 0)
    ),
    "translate": _translated,
}


class _BoundedFormatter(SandboxedFormatter):
    """``str.format``/``format_map`` in the sandbox with every field's width bounded before it pads."""

    _SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d*))?[a-zA-Z%]?", re.S)

    def vformat(self, format_string, args, kwargs):
        self._total = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if format_spec and not isinstance(value, date | clock_time):  # dates take strftime patterns
            match = self._SPEC.fullmatch(format_spec)
            if match is None:
                raise SecurityError(f"unsupported format specification {format_spec[:20]!r}")
            for part in match.groups():
                if part and len(part) > 6:
                    raise SecurityError(f"a format width of {part[:12]}... is larger than {MAX_OPERAND}")
                self._total += int(part or 0)
        self._total += _length(value) if isinstance(value, str) else 0
        _reserve(self._total, what="formatted text")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        # '~' goes through the environment, which refuses to stringify objects (macros, loop, types)
        self.write("environment.concat(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_DICT_ATTRIBUTES = frozenset(dir(dict))


_GUARDED_FILTERS = {
    "format": _safe_format,
    "center": _safe_center,
    "indent": _safe_indent,
    "wordwrap": _safe_wordwrap,
    "join": _safe_join,
    "replace": _safe_replace,
    "batch": _safe_batch,
    "slice": _safe_slice,
}


class TemplateSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    def __init__(self, *, autoescape: bool):
        # optimized=False: Jinja's optimizer would run constant filter calls (marketer code) at compile
        # time, while the template is saved, with no budget: '%0999999999d'|format(1) took 38 s
        # ChainableUndefined: a value under a missing one (``traits.address.city`` for a customer without
        # an address) is missing too, printed empty and covered by ``default``, not a failed message
        super().__init__(
            autoescape=autoescape, finalize=_print, optimized=False, undefined=ChainableUndefined
        )
        self.globals = {"range": self._range, "dict": dict}
        for name in ("pprint", "xmlattr", "attr"):  # nothing a marketer needs; handy for probing
            self.filters.pop(name, None)
        self.filters["string"] = _safe_string
        self.filters["default"] = self.filters["d"] = _default
        self.filters.update(_GUARDED_FILTERS)
        self.filters.update(formatting.FILTERS)  # plain data in, plain text out: no Babel object escapes
        for name in _TEXT_FILTERS:
            self.filters[name] = _null_is_empty(self.filters[name])

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
        values = tuple("" if value is None else value for value in values)  # "Hi " ~ a null: "Hi "
        for value in values:
            _refuse_objects(value)
        joined = (markup_join if eval_ctx.autoescape else str_join)(values)
        # the parts are bounded already, so the join is at most a few times their size: checked after
        _reserve(len(joined), MAX_OUTPUT_CHARS)
        return joined

    def wrap_str_format(self, value: Any):
        """``str.format``/``format_map``, as Jinja's sandbox wraps them, with bounded field widths."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"
        if isinstance(f_self, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja returns a silent Undefined here; we fail the render so probing is visible.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "+":
            result = left + right
            if isinstance(result, str | list | tuple):  # the operands are bounded: checked after
                _reserve(len(result), MAX_OUTPUT_CHARS)
            return result
        if operator == "%":
            _printf(left, right)
            return left % right
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            result = left**right
            if isinstance(result, int) and result.bit_length() > 256:
                raise SecurityError("number too large")
            return result
        # '*': repeated strings/lists must stay small
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int):
                if len(seq) * n > MAX_OPERAND:
                    raise SecurityError(f"'*' would build more than {MAX_OPERAND} items")
                _reserve(len(seq) * n)
        return left * right

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if _CURRENT.budget is not None:
            _CURRENT.budget.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes) and isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            name = __obj.__name__
            if name == "join":
                items = list(args[0]) if len(args) == 1 and not kwargs else None
                if items is not None:
                    _reserve(_joined_size(owner, items))
                    args = (items,)
            elif name in _METHOD_SIZES:
                try:
                    size = _METHOD_SIZES[name](owner, *args, **kwargs)
                except TypeError:
                    size = 0  # wrong arguments: the method itself says so
                _reserve(size)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if _CURRENT.budget is not None:
            _CURRENT.budget.tick()
        if type(obj) is dict and (attribute in obj or attribute not in _DICT_ATTRIBUTES):
            # ``traits.first_name``: the key of a plain dict, without first failing to find an attribute
            # of that name (an exception per lookup); and a key named like a dict method is the data
            # (``properties.items`` of a cart is its items, not ``dict.items``)
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class _Current(threading.local):
    """The budget of the render running now (a render is synchronous: one per thread at a time)."""

    budget: Budget | None = None


_CURRENT = _Current()
gc.callbacks.append(_excuse_full_collections)


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


_UNKNOWN = object()


def _literal(node: nodes.Node | None) -> Any:
    """The value of a literal in the template source (``'x'``, ``-3``, ``(1, 'a')``), else ``_UNKNOWN``.
    Nothing is evaluated: this only reads constants."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        value = node.node.value
        return -value if isinstance(value, int | float) and not isinstance(value, bool) else _UNKNOWN
    if isinstance(node, nodes.Tuple | nodes.List):
        items = [_literal(item) for item in node.items]
        if any(item is _UNKNOWN for item in items):
            return _UNKNOWN
        return tuple(items) if isinstance(node, nodes.Tuple) else items
    return _UNKNOWN


def _arguments(node: nodes.Filter | nodes.Call) -> tuple[list, dict] | None:
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    args = [_literal(arg) for arg in node.args]
    kwargs = {kw.key: _literal(kw.value) for kw in node.kwargs}
    if any(v is _UNKNOWN for v in (*args, *kwargs.values())):
        return None
    return args, kwargs


def _problem(check, *args: Any, **kwargs: Any) -> str | None:
    try:
        check(*args, **kwargs)
    except SecurityError as exc:
        return str(exc)
    except Exception:  # wrong argument types: rendering reports those, for the data it gets
        return None
    return None


def _format_widths(pattern: str) -> None:
    """The literal widths of a ``str.format`` pattern (nested ``{}`` widths are checked when rendering)."""
    total = len(pattern)
    for _, _, spec, _ in Formatter().parse(pattern):
        match = _BoundedFormatter._SPEC.fullmatch(spec or "")
        for part in match.groups() if match else ():
            if part and len(part) > 6:
                raise SecurityError(f"a format width of {part[:12]}... is larger than {MAX_OPERAND}")
            total += int(part or 0)
    _reserve(total, what="formatted text")


# What each guarded filter needs to be checked with the literal arguments it was given; the value
# filtered is usually data (``traits.x``): the widths alone are checked then, against an empty string.
_STATIC_FILTER_CHECKS = {
    "format": lambda value, *args, **kwargs: _printf(value, kwargs or tuple(args)),
    "center": lambda value, width=80: _reserve(max(_length(value), _count(width, "a width of"))),
    "indent": lambda value, width=4, *_, **__: (
        _count(width, "an indent of") if not isinstance(width, str) else _reserve(len(width))
    ),
    "batch": lambda value, linecount, *_: _count(linecount, "a batch size of"),
    "slice": lambda value, slices, *_: _count(slices, "a number of slices of"),
    "replace": lambda value, old, new, count=None: _reserve(_replaced_size(value, old, new, count)),
}


def _method_check(size, owner: str, *args: Any, **kwargs: Any) -> None:
    _reserve(size(owner, *args, **kwargs))


def oversized_constructs(ast: nodes.Template) -> list[str]:
    """Filters, ``%`` and str methods whose literal arguments are already past the caps, found at save
    time (the same checks run again on real data at render time)."""
    problems = []
    for node in ast.find_all((nodes.Filter, nodes.Mod, nodes.Call)):
        if isinstance(node, nodes.Filter) and node.name in _STATIC_FILTER_CHECKS:
            arguments = _arguments(node)
            value = _literal(node.node) if node.node is not None else ""
            if arguments is None or (value is _UNKNOWN and node.name in ("format", "replace")):
                continue
            value = "" if value is _UNKNOWN else value
            problem = _problem(_STATIC_FILTER_CHECKS[node.name], value, *arguments[0], **arguments[1])
        elif isinstance(node, nodes.Mod):
            left, right = _literal(node.left), _literal(node.right)
            if not isinstance(left, str):
                continue
            problem = _problem(_printf, left, () if right is _UNKNOWN else right)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            owner, name, arguments = _literal(node.node.node), node.node.attr, _arguments(node)
            if name in ("format", "format_map") and isinstance(owner, str):
                problem = _problem(_format_widths, owner)
                if problem:
                    problems.append(problem)
                continue
            if name not in _METHOD_SIZES or arguments is None:
                continue
            owner = owner if isinstance(owner, str) else ""
            problem = _problem(_method_check, _METHOD_SIZES[name], owner, *arguments[0], **arguments[1])
        else:
            continue
        if problem:
            problems.append(problem)
    return sorted(set(problems))
