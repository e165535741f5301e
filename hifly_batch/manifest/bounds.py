"""The guards of bounded rendering (SPEC §3), each where a cost arises; each spends from
the render's budget (:mod:`budget`):

- loops: every ``{% for %}`` (and every ``loop(...)`` of a recursive loop) iterates
  through :func:`bounded_iter`, which counts turns and looks at the clock;
- calls: every call and every filter a template uses looks at the clock, and so does
  each render when it starts (a template out of time is not run) and ends (a render
  that overran is refused, even one that never called anything);
- sizes: the filters, operators and ``str`` methods that can build a large text from
  a small one check the size of their result before they build it: no value past
  MAX_TEXT, and no more than MAX_BUILT characters built in all by one render (so that
  many values each just under the limit, or a block that captures its output, cannot
  add up to gigabytes);
- texts: a value is made text (``{{ }}``, ``~``, ``string``, ``join``, ``%``,
  ``format``, ...) only when it is plain data (:mod:`plain`).
"""

from __future__ import annotations

import _string  # the field-name splitter string.Formatter uses
import itertools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import filters, nodes
from jinja2.runtime import LoopContext
from jinja2.visitor import NodeTransformer

from hifly_batch.manifest.budget import (
    MAX_BITS,
    MAX_TEXT,
    RenderLimit,
    check_size,
    joined,
    tick,
    turn,
)
from hifly_batch.manifest.plain import (
    Null,
    Unspoken,
    as_text,
    check_spoken,
    refuse_set,
    text_size,
)

LOOP_NAME = "hifly_bounded_loop"  # the global every for-loop iterates through
CONCAT_NAME = "hifly_bounded_concat"  # the global every ~ goes through
WRAP_MAX = 10_000  # characters wordwrap takes (a script is far shorter)
URLIZE_MAX = 100_000  # characters urlize takes (about 0.2 s of work)


def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, each turn counted against the render's budget; a set is refused,
    as its order changes from run to run."""
    refuse_set(iterable, "a loop")
    for item in iterable:
        turn()
        yield item


class BoundLoops(NodeTransformer):
    """Rewrites ``{% for x in seq %}`` as ``{% for x in hifly_bounded_loop(seq) %}``, and
    ``a ~ b`` as ``hifly_bounded_concat([a, b])``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(LOOP_NAME, "load"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        line = node.lineno  # (so that a fault in it is reported at its own line)
        parts = nodes.List(node.nodes, lineno=line)
        name = nodes.Name(CONCAT_NAME, "load", lineno=line)
        return nodes.Call(name, [parts], [], None, None, lineno=line)


def bounded_concat(parts: list[Any]) -> str:
    """``a ~ b ~ ...``: each part plain data, the whole refused past MAX_TEXT."""
    tick()
    return joined(as_text(part, "~") for part in parts)


_SEQUENCES = (str, bytes, list, tuple)

# ---------------------------------------------------------------- operators


def check_binop(operator_name: str, left: Any, right: Any) -> None:
    """``left <operator> right`` for the operators that can build a large value from
    small ones: ``*`` (texts and lists, at every depth; numbers by their bits), ``+``,
    ``%`` and ``**``."""
    if operator_name == "**":
        if isinstance(right, int) and abs(right) > 64:
            raise RenderLimit("the exponent is larger than 64")
        if isinstance(left, int) and left.bit_length() * abs(_number(right)) > MAX_BITS:
            raise RenderLimit("the power is too large a number")
    elif operator_name == "%" and isinstance(left, str):  # printf-style
        check_size(percent_size(left, right, "%"), "%")
    elif operator_name == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            check_size(_size(left) + _size(right), "+")
    elif operator_name == "*":
        _refuse_repeated_numeral(left, right)
        _check_product(left, right)


# A text that reads as a number: a CSV cell or a var, which are text (SPEC §3).
_NUMERAL = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


def _refuse_repeated_numeral(left: Any, right: Any) -> None:
    """``row.qty * 2`` with a ``qty`` of ``9`` is ``99``: the text repeated, not 18."""
    text, times = (left, right) if isinstance(left, str) else (right, left)
    if isinstance(text, str) and isinstance(times, int) and _NUMERAL.fullmatch(text):
        raise Unspoken(
            f"{text!r} * {times} repeats the text {text!r}: CSV cells and vars are text; "
            f"for arithmetic write `x | int * {times}` (or `| float`)"
        )


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, _SEQUENCES) or isinstance(right, _SEQUENCES):
        size = _size(left) * _size(right)
        if size > MAX_TEXT:
            raise RenderLimit(
                f"* would make {size:,} characters or elements, more than {MAX_TEXT:,}"
            )
        check_size(size, "*")
    elif isinstance(left, int) and isinstance(right, int):  # a number, not a text
        _check_bits(left.bit_length() + right.bit_length(), "product")


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_BITS:
        raise RenderLimit(f"the {what} is too large a number")


def _size(value: Any) -> int:
    """How big ``value`` is as an operand: a text's length, a list's elements counted at
    every depth (``[[1]*10**6]*10**6`` is 10**12), a number's value."""
    if isinstance(value, str | bytes):
        return max(len(value), 1)
    if isinstance(value, list | tuple):
        total = len(value)
        for element in value:  # (stops counting once past the limit)
            if total > MAX_TEXT:
                break
            if isinstance(element, _SEQUENCES):
                total += _size(element)
        return max(total, 1)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(abs(value), 1)
    return 1


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


# ---------------------------------------------------------------- formats

# A printf conversion: %(key)s, flags, a width and a precision (written or *), a type.
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
    r"[hlL]?(?P<type>[diouxXeEfFgGcrsa%])"
)
# A printf conversion that may ask for a width or precision.
_SIZED_FIELD = re.compile(r"%[#0\- +]*[\d*.]")
# A str.format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?\w?%?")


def _widths(what: str, *widths: int) -> int:
    """The widest of a field's width and precision, refused past MAX_TEXT."""
    widest = max(widths, default=0)
    if widest > MAX_TEXT:
        raise RenderLimit(f"{what} asks for a width of more than {MAX_TEXT:,} characters")
    return widest


def percent_size(spec: str, values: Any, what: str) -> int:
    """About how many characters ``spec % values`` makes: the literal text, and for each
    field the widest of its width, its precision and its value's text (digits in the
    text or in a value are not widths). Each value used must be plain data."""
    given = list(values) if isinstance(values, tuple) else [values]
    keyed = isinstance(values, Mapping) and "%(" in spec
    if not keyed and not _SIZED_FIELD.search(spec):  # (the common case, made quick)
        return len(spec) + sum(len(v) if type(v) is str else text_size(v, what) for v in given)
    size, end = 0, 0
    for field in _PRINTF.finditer(spec):
        size += field.start() - end
        end = field.end()
        if field["type"] == "%":
            size += 1
            continue
        width = _star(field["width"], given, what)
        precision = _star(field["precision"], given, what)
        value = values.get(field["key"], "") if keyed else (given.pop(0) if given else "")
        size += max(_widths(what, width, precision), text_size(value, what))
    return size + len(spec) - end


def _star(written: str | None, given: list[Any], what: str) -> int:
    """A printf width or precision: written, or taken from the values (``*``)."""
    if written == "*":
        return abs(_number(given.pop(0))) if given else 0
    return _widths(what, int(written)) if written else 0


def format_size(spec: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], what: str) -> int:
    """About how many characters ``spec.format(*args, **kwargs)`` makes (as
    :func:`percent_size`); widths given by nested fields (``{:>{}}``) count too."""
    size, auto = 0, itertools.count()
    for literal, name, spec_, _ in string.Formatter().parse(spec):
        size += len(literal)
        if name is None:
            continue
        value = _field(name, args, kwargs, auto)
        nested = "".join(
            lit + (str(_field(n, args, kwargs, auto)) if n is not None else "")
            for lit, n, _, _ in string.Formatter().parse(spec_ or "")
        )
        found = _SPEC.fullmatch(nested)
        widths = [int(w) for w in (found.groups() if found else re.findall(r"\d+", nested)) if w]
        size += max(_widths(what, *widths), text_size(value, what))
    return size


def _field(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], auto: Iterator[int]) -> Any:
    """The value a str.format field names: its argument, then its ``[index]``es; an
    attribute (``.x``) is left to the sandbox, the argument standing for its size."""
    first, rest = _string.formatter_field_name_split(name)
    try:
        value = (
            kwargs[first]
            if isinstance(first, str) and first
            else args[first if isinstance(first, int) else next(auto)]
        )
        for is_attribute, key in rest:
            if is_attribute:
                break
            value = value[key]
    except (LookupError, TypeError):
        return ""  # str.format itself says what is wrong
    return value


# ---------------------------------------------------------------- filters and methods


def _wordwrap(environment: Any, s: Any, *args: Any, **kwargs: Any) -> Any:
    if len(str(s)) > WRAP_MAX:
        raise RenderLimit(f"wordwrap takes at most {WRAP_MAX:,} characters")
    return filters.do_wordwrap(environment, s, *args, **kwargs)


def _urlize(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    if len(str(value)) > URLIZE_MAX:
        raise RenderLimit(f"urlize takes at most {URLIZE_MAX:,} characters")
    return filters.do_urlize(eval_ctx, value, *args, **kwargs)


def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None:
        hits = min(hits, max(_number(count), 0))
    check_size(len(text) + hits * (len(new_s) - len(old_s)), "replace")
    return filters.do_replace(eval_ctx, s, old, new, count)


def _center(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
    check_size(len(str(value)) + max(_number(width), 0), "center")
    return filters.do_center(value, width, *args, **kwargs)


def _indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
    pad = _number(width) if not isinstance(width, str) else len(width)
    check_size(len(str(s)) + max(pad, 0) * (str(s).count("\n") + 2), "indent")
    return filters.do_indent(s, width, *args, **kwargs)


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    check_size(percent_size(str(value), kwargs or args, "format"), "format")
    return filters.do_format(value, *args, **kwargs)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
    refuse_set(value, "join")
    items = list(bounded_iter(value)) if not isinstance(value, str) else list(value)
    if attribute is not None:  # the attributes are what is made text
        items = list(map(filters.make_attrgetter(eval_ctx.environment, attribute), items))
    sizes = sum(text_size(item, "join") for item in items)
    check_size(sizes + text_size(d, "join") * len(items), "join")
    return filters.do_join(eval_ctx, items, d)


def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """``sum``, built in linear time when it joins lists (Python's is quadratic)."""
    if not isinstance(start, list | tuple):
        return filters.sync_do_sum(environment, iterable, attribute, start)
    if attribute is not None:
        iterable = map(filters.make_attrgetter(environment, attribute), iterable)
    total = list(start)
    for item in bounded_iter(iterable):
        if not isinstance(item, type(start)):
            raise TypeError(f"sum adds lists to a list, not a {type(item).__name__}")
        if len(total) + _size(item) > MAX_TEXT:
            check_size(len(total) + _size(item), "sum")  # refused
        total.extend(item)
    check_size(len(total), "sum")
    return type(start)(total)


_NOT_GIVEN = object()


def _strict_number(name: str, convert: Callable[..., Any]) -> Callable[..., Any]:
    """``int``/``float``, refusing what is no number (a null, an empty cell, ``1,299``,
    ``abc``): Jinja's would quietly make it 0, and the script would say "0元". A default
    given on purpose (``| int(0)``) is still taken; NaN and infinity are no number
    either."""

    def number(value: Any, default: Any = _NOT_GIVEN, *args: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, Null):
            raise Unspoken(
                f"{name} of a null value; to choose a number on purpose write `(x or 0) | {name}`"
            )
        result = convert(value, _NOT_GIVEN, *args, **kwargs)
        if result is _NOT_GIVEN or (isinstance(result, float) and not math.isfinite(result)):
            if default is not _NOT_GIVEN:
                return default
            raise Unspoken(
                f"{name} of {str(value)[:40]!r}, which is no number; to choose one on purpose "
                f"when it is not, write `| {name}(0)`"
            )
        return result

    return number


# Each takes what Jinja's own filter takes first (the environment, say).
_PASSES: list[tuple[Any, Any]] = [
    (_wordwrap, filters.do_wordwrap),
    (_urlize, filters.do_urlize),
    (_replace, filters.do_replace),
    (_join, filters.do_join),
    (_sum, filters.sync_do_sum),
]
for _filter, _jinja in _PASSES:
    _filter.jinja_pass_arg = _jinja.jinja_pass_arg

FILTERS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "center": _center,
    "wordwrap": _wordwrap,
    "urlize": _urlize,
    "indent": _indent,
    "format": _format,
    "join": _join,
    "sum": _sum,
    "int": _strict_number("int", filters.do_int),
    "float": _strict_number("float", filters.do_float),
}

# The filters that make their value (and arguments) text: each must be plain data.
TEXT_FILTERS = frozenset(
    {"capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
     "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
     "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"}
)  # fmt: skip


def checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (the filter ``name``), looking at the clock on every use and, for a
    filter that makes text, refusing a value that is not plain data; its
    ``jinja_pass_arg`` marker is kept."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    makes_text = name in TEXT_FILTERS

    def checked(*args: Any, **kwargs: Any) -> Any:
        tick()
        if makes_text:
            for value in (*args[skip:], *kwargs.values()):
                check_spoken(value, name)
        return func(*args, **kwargs)

    checked.__name__ = getattr(func, "__name__", name)
    checked.__doc__ = func.__doc__
    if skip:
        checked.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def check_call(obj: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A call a template makes: a recursive ``loop(...)``'s turns are counted, and a
    method that can build a large text or list from a small one is sized; returns the
    arguments to call with (an iterator given to ``join`` is read once, here)."""
    if isinstance(obj, LoopContext) and args:
        return (bounded_iter(args[0]), *args[1:])
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str | bytes):
        if name == "join" and args and not isinstance(args[0], list | tuple):
            refuse_set(args[0], "join")
            args = (list(bounded_iter(args[0])), *args[1:])
        check_str_method(name, owner, args)
    elif isinstance(owner, list) and name == "extend" and args:
        check_size(len(owner) + _size(args[0]), "extend")
    return args


def check_str_method(name: str, text: str | bytes, args: tuple[Any, ...]) -> None:
    """A call of a ``str`` (or ``bytes``) method that can build a large text from a
    small one."""
    if name in ("ljust", "rjust", "center", "zfill") and args:
        check_size(max(_number(args[0]), len(text)), name)
    elif name == "expandtabs":
        size = _number(args[0]) if args else 8
        tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
        check_size(len(text) + max(size, 0) * tabs, name)
    elif name == "replace" and len(args) >= 2 and isinstance(text, str):
        old, new = str(args[0]), str(args[1])
        hits = text.count(old) if old else len(text) + 1
        check_size(len(text) + hits * (len(new) - len(old)), name)
    elif name == "join" and args and isinstance(args[0], list | tuple):
        items = args[0]
        size = sum(text_size(i, "join") if isinstance(text, str) else _size(i) for i in items)
        check_size(size + len(text) * len(items), name)
    elif name == "translate" and args:
        check_size(len(text) * _widest_replacement(args[0]), name)


def _widest_replacement(table: Any) -> int:
    """The longest text a ``translate`` table puts for one character."""
    if isinstance(table, Mapping):
        values = table.values()
    elif isinstance(table, str | bytes):
        return 1
    else:
        return MAX_TEXT + 1  # another kind of table: refused, it could make anything
    return max((len(v) for v in values if isinstance(v, str | bytes)), default=1)
