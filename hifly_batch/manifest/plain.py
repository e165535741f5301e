"""What may be made text (SPEC §3): plain data only, so a text never holds ``None``, a
JSON null, or an object's memory address, which would change it from run to run (and
each run would pay for the video again)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Undefined

from hifly_batch.manifest.budget import MAX_TEXT, RenderLimit, check_size

NULL_SPOKEN = (
    "a value rendered here is null; to speak nothing write `{{ x or '' }}` "
    "or `{{ x | default('', true) }}`"
)


class Unspoken(Exception):
    """A value that is not plain data (a null, a function, a generator, ...) was being
    made text; the message says what it was and what to write instead."""


class Null:
    """A JSON ``null`` in a row: false, as ``None`` is (so ``or ''`` and ``default('',
    true)`` choose the empty text), but never spoken: made text in any way (``~``,
    ``string``, ``%``, ``format``, a list holding it) it is an error, not "None"."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Null)

    def __hash__(self) -> int:
        return hash(None)

    def __str__(self) -> str:
        raise Unspoken(NULL_SPOKEN)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        raise Unspoken(NULL_SPOKEN)


NULL = Null()


def as_text(value: Any, what: str) -> str:
    """``value`` as text, when it is plain data (see :func:`text_size`)."""
    if type(value) is str:  # the common case, and free
        return value
    text_size(value, what)
    return str(value)


def text_size(value: Any, what: str) -> int:
    """About how many characters ``value`` makes as text (at least as many as ``str``
    makes); raises :class:`Unspoken` unless it is plain data: texts, numbers, booleans,
    and lists, tuples and dicts of those at any depth; :class:`RenderLimit` when the
    text would pass MAX_TEXT (a list of references can hold millions of elements)."""
    size, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, int):  # booleans too
            size += item.bit_length() * 3 // 10 + 5
        elif isinstance(item, float):
            size += 24
        elif isinstance(item, list | tuple):
            size += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Mapping):  # (vars are a read-only mapping)
            size += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Undefined):  # a strict one refuses on its own
            size += 9
        else:
            raise _unspoken(item, what)
        if size > MAX_TEXT:
            raise RenderLimit(f"{what} would make more than {MAX_TEXT:,} characters of text")
    return size


def check_spoken(value: Any, what: str) -> Any:
    """``value``, when it may be made text (the values of ``{{ }}`` pass here): a
    container's text is counted toward MAX_BUILT."""
    if isinstance(value, str | int | float):
        return value
    check_size(text_size(value, what), what)
    return value


def _unspoken(value: Any, what: str) -> Unspoken:
    if value is None or isinstance(value, Null):
        return Unspoken(NULL_SPOKEN)
    kind, hint = _kind(value)
    return Unspoken(
        f"{what} renders a Python object ({kind}), not a value: its text would change "
        f"from run to run; {hint}"
    )


def _kind(value: Any) -> tuple[str, str]:
    """What ``value`` is, in words, and what to write instead."""
    name = type(value).__name__
    if isinstance(value, set | frozenset):
        return "a set", "add | sort to put it in order"
    if callable(value) and hasattr(value, "__name__"):
        return f"the function or method {value.__name__!r}", "call it: add ()"
    if isinstance(value, Iterator) or name.startswith("dict_") or isinstance(value, range):
        return f"a {name}", "add | list to make it a list"
    return f"a {name}", "leave it out or use one of its values"


def refuse_set(value: Any, what: str) -> None:
    if isinstance(value, set | frozenset):
        raise Unspoken(
            f"{what} goes through a set, whose order changes from run to run; "
            "add | sort to put it in order"
        )


def ordered_difference(left: Any, right: Any, result: Any) -> Any:
    """``left - right`` as a list in ``left``'s order, when Python made it a set (dict
    keys minus a list): a set's order follows per-process string hashing, so the text
    would change from run to run."""
    if not isinstance(result, set | frozenset):
        return result
    return [item for item in dict.fromkeys(left) if item in result]
