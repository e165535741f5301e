"""Bounded rendering (SPEC §3): no template may build more than 1 MB of text, loop more
than 100,000 times or run for more than about a second, so that ``validate`` and
``plan`` stay within a few hundred MB and seconds whatever a template does.

Three guards, each where the cost arises:

- loops: every ``{% for %}`` iterates through :func:`bounded_iter` (the template's
  syntax tree is rewritten before it is compiled), which counts turns and looks at the
  clock;
- calls: every call a template makes (macros included, so recursion too) looks at the
  clock;
- sizes: the filters and operators that can build a large text from a small one
  (``replace``, ``center``, ``indent``, ``wordwrap``, ``format``, ``%``, ``str.format``
  widths, ``join``) check the size of their result before they build it, and the
  output is counted as it is produced.

The limits hold per render (one field of one row), and a template's renders share a
time allowance too: about a second plus ``ROW_SECONDS`` a render, so a template that
takes a little under a second for each of many rows is refused after a second or two,
not after one second a row.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import filters, nodes
from jinja2.visitor import NodeTransformer

MAX_TEXT = 1_000_000  # characters a render (or one value in it) may hold
MAX_LOOPS = 100_000  # loop turns in one render
MAX_BITS = 1_000_000  # a number a power may make
MAX_SECONDS = 1.0  # one render's time
# A template's average time a render over many rows: a script's template takes well
# under a millisecond, so this is a hundred times that and more.
ROW_SECONDS = 0.002
LOOP_NAME = "hifly_bounded_loop"  # the global every for-loop iterates through
CONCAT_NAME = "hifly_bounded_concat"  # the global every ~ goes through

# A width or precision in a format that would build a large text: 7 digits or more.
_WIDE = re.compile(r"\d{7,}")
# A str.format field whose spec holds another field: its width comes from an argument.
NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")
WRAP_MAX = 10_000  # characters wordwrap takes (a script is far shorter)


class RenderLimit(Exception):
    """A render went past a limit; the message says which."""


class OutOfTime(RenderLimit):
    """A render ran past MAX_SECONDS."""


class Spend:
    """The time one template has taken over all its renders, and the fault that ended
    them: once out of time, a template is not run again (its later rows get the fault)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.renders = 0
        self.fault: Exception | None = None

    def allowance(self) -> float:
        """Seconds the next render may take: at most MAX_SECONDS, less once the renders so
        far took more than ROW_SECONDS each on average beyond a first MAX_SECONDS."""
        shared = MAX_SECONDS + ROW_SECONDS * (self.renders + 1) - self.seconds
        return min(MAX_SECONDS, shared)


class _Budget:
    def __init__(self, spend: Spend) -> None:
        self.turns = 0
        self.spend = spend
        self.started = time.monotonic()
        self.deadline = self.started + spend.allowance()

    def turn(self) -> None:
        self.turns += 1
        if self.turns > MAX_LOOPS:
            raise RenderLimit(f"the template loops more than {MAX_LOOPS:,} times")
        if self.turns % 1024 == 0:
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if now <= self.deadline:
            return
        spent = self.spend.seconds + now - self.started
        renders = self.spend.renders + 1
        if now - self.started >= MAX_SECONDS:
            raise OutOfTime(f"the template runs for more than {MAX_SECONDS:g} s")
        raise OutOfTime(
            f"the template took {spent:.1f} s over {renders:,} renders, "
            f"{1000 * spent / renders:.0f} ms each; a template may take {1000 * ROW_SECONDS:g} ms "
            "a render on average over many rows (a script's takes well under 1 ms)"
        )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


@contextlib.contextmanager
def rendering(spend: Spend) -> Iterator[None]:
    """One render's budget of loop turns and time, its time added to ``spend``."""
    budget = _Budget(spend)
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)
        spend.seconds += time.monotonic() - budget.started
        spend.renders += 1


def tick() -> None:
    """Look at the clock (from every call a template makes)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, each turn counted against the render's budget."""
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.turn()
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
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Call(nodes.Name(CONCAT_NAME, "load"), [parts], [], None, None)


def bounded_concat(parts: list[Any]) -> str:
    """``a ~ b ~ ...``, refused once it would pass MAX_TEXT."""
    tick()
    return joined(str(part) for part in parts)


def joined(chunks: Iterable[str]) -> str:
    """The output of a render, refused once it passes MAX_TEXT."""
    size, parts = 0, []
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_TEXT:
            raise RenderLimit(f"the template makes more than {MAX_TEXT:,} characters")
        parts.append(chunk)
    return "".join(parts)


def check_size(size: int, what: str) -> None:
    if size > MAX_TEXT:
        raise RenderLimit(f"{what} would make {size:,} characters, more than {MAX_TEXT:,}")


def check_binop(operator_name: str, left: Any, right: Any) -> None:
    """``left <operator> right`` for the operators that can build a large value from
    small ones: ``*`` (texts and lists, at every depth), ``+``, ``%`` and ``**``."""
    if operator_name == "**":
        if isinstance(right, int) and abs(right) > 64:
            raise RenderLimit("the exponent is larger than 64")
        if isinstance(left, int) and left.bit_length() * abs(_number(right)) > MAX_BITS:
            raise RenderLimit("the power is too large a number")
    elif operator_name == "%" and isinstance(left, str):  # printf-style: a width
        check_percent(left, right)
    elif operator_name == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            check_size(_size(left) + _size(right), "+")
    elif operator_name == "*" and (size := _size(left) * _size(right)) > MAX_TEXT:
        raise RenderLimit(f"* would make {size:,} characters or elements, more than {MAX_TEXT:,}")


def _size(value: Any) -> int:
    """How big ``value`` is as an operand: a text's length, a list's elements counted at
    every depth (``[[1]*10**6]*10**6`` is 10**12), a number's value."""
    if isinstance(value, str):
        return max(len(value), 1)
    if isinstance(value, list | tuple):
        total = len(value)
        for element in value:  # (stops counting once past the limit)
            if total > MAX_TEXT:
                break
            if isinstance(element, str | list | tuple):
                total += _size(element)
        return max(total, 1)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(abs(value), 1)
    return 1


def check_format(spec: object, what: str) -> None:
    """A format (``%``, ``format``, ``str.format``) asking for a width or precision that
    would build a large text."""
    if isinstance(spec, str) and _WIDE.search(spec):
        raise RenderLimit(f"{what} asks for a width of more than {MAX_TEXT:,} characters")


def check_width_arguments(values: Iterable[Any], what: str) -> None:
    """Arguments that give a format's width (``"{:>{}}".format(x, 10**9)``)."""
    if any(isinstance(v, int) and abs(v) > MAX_TEXT for v in values):
        raise RenderLimit(f"{what} asks for a width of more than {MAX_TEXT:,} characters")


def _wordwrap(environment: Any, s: Any, *args: Any, **kwargs: Any) -> Any:
    if len(str(s)) > WRAP_MAX:
        raise RenderLimit(f"wordwrap takes at most {WRAP_MAX:,} characters")
    return filters.do_wordwrap(environment, s, *args, **kwargs)


_wordwrap.jinja_pass_arg = filters.do_wordwrap.jinja_pass_arg  # type: ignore[attr-defined]


def check_percent(spec: str, values: Any) -> None:
    """``spec % values``: a width written in ``spec``, or given by ``*``, too large."""
    check_format(spec, "%")
    given = values if isinstance(values, tuple) else (values,)
    if "*" in spec and any(abs(_number(v)) > MAX_TEXT for v in given if isinstance(v, int)):
        raise RenderLimit(f"% asks for a width of more than {MAX_TEXT:,} characters")


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


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
    check_format(value, "format")
    check_format(str(args) + str(kwargs), "format")
    return filters.do_format(value, *args, **kwargs)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
    items = list(bounded_iter(value)) if not isinstance(value, str) else value
    check_size(sum(len(str(i)) for i in items) + len(d) * len(items), "join")
    return filters.do_join(eval_ctx, items, d, attribute)


_replace.jinja_pass_arg = filters.do_replace.jinja_pass_arg  # type: ignore[attr-defined]
_join.jinja_pass_arg = filters.do_join.jinja_pass_arg  # type: ignore[attr-defined]

FILTERS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "center": _center,
    "wordwrap": _wordwrap,
    "indent": _indent,
    "format": _format,
    "join": _join,
}


def check_str_method(name: str, text: str, args: tuple[Any, ...]) -> None:
    """A call of a ``str`` method that can build a large text from a small one."""
    if name in ("ljust", "rjust", "center", "zfill") and args:
        check_size(max(_number(args[0]), len(text)), name)
    elif name == "expandtabs":
        size = _number(args[0]) if args else 8
        check_size(len(text) + max(size, 0) * text.count("\t"), name)
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = text.count(old) if old else len(text) + 1
        check_size(len(text) + hits * (len(new) - len(old)), name)
    elif name == "join" and args and isinstance(args[0], list | tuple):
        items = args[0]
        check_size(sum(len(str(i)) for i in items) + len(text) * len(items), name)
