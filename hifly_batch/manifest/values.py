"""Small value rules of the manifest: durations, names, truthiness, HTML tags, paths."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smh]?)$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
# "<" then an optional "/", a letter, and anything up to the next ">".
HTML_TAG = re.compile(r"</?[^\W\d_][^>]*>")
_FALSE_WORDS = frozenset({"", "false", "0", "no", "none"})
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def parse_duration(value: object) -> float:
    """Seconds in ``90s``, ``0.25s``, ``1.5m``, ``2h`` or a plain number; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number with an optional unit s, m or h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ValueError(
                f"{value!r} is not a duration: write a number with an optional unit "
                "s, m or h, such as 90s, 1.5m or 2h"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value!r}: a duration must be greater than 0")
    return seconds


def is_item_name(name: str) -> bool:
    """A letter (any script) or ``_``, then letters, digits, ``_`` or ``-``."""
    if not name or not (name[0].isalpha() or name[0] == "_"):
        return False
    return all(ch.isalnum() or ch in "_-" for ch in name)


def is_campaign_name(name: str) -> bool:
    """One safe path segment: 1-64 letters, digits, ``.``, ``_``, ``-``; no leading ``.``."""
    if not 1 <= len(name) <= 64 or name.startswith("."):
        return False
    return all(ch.isalnum() or ch in "._-" for ch in name)


def spoken(rendered: str) -> str:
    """A rendered field as it is sent (SPEC §3): NFC, without surrounding whitespace;
    the empty text when all it holds is whitespace and invisible characters (format
    characters, Unicode category Cf: U+200B, U+2060, U+FEFF, ...; see
    :func:`looks_like_nothing`)."""
    text = unicodedata.normalize("NFC", rendered).strip()
    if _all_visible(text) or not all(ch.isspace() or looks_like_nothing(ch) for ch in text):
        return text
    return ""


_NO_ATTRIBUTE = re.compile(r"'(dict|mappingproxy) object' has no attribute '([^']*)'")


def columns_named(
    message: str, row: Mapping[str, Any], variables: Mapping[str, Any] | None = None
) -> str:
    """A template's fault about a name a mapping lacks said with the names there are,
    and the closest: the row's columns (a misspelt column, or a CSV read with the wrong
    delimiter), or the vars (``vars`` is the one read-only mapping a template sees)."""
    match = _NO_ATTRIBUTE.search(message)
    if match is None:
        return message
    kind, missing = match.groups()
    if kind == "mappingproxy":
        names, what, where = [str(v) for v in variables or {}], "var", "vars are"
    elif missing in row or (
        (_nests(variables) or _nests(row)) and not _close(missing, [str(c) for c in row])
    ):
        return message  # maybe a mapping inside the row or vars: Jinja's words are all we know
    else:
        names, what, where = [str(c) for c in row], "column", "its columns are"
    said = f"no {what} {missing!r}" + (" in this row" if what == "column" else "")
    said += f"; {where}: {', '.join(names)}" if names else f"; there are no {what}s"
    if close := _close(missing, names):
        said += f" (did you mean {close!r}?)"
    return message[: match.start()] + said + message[match.end() :]


def _nests(variables: Mapping[str, Any] | None) -> bool:
    return any(isinstance(value, Mapping) for value in (variables or {}).values())


def _close(name: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(name, names, n=1)
    return found[0] if found else None


def visible(text: str) -> str:
    """``text`` as a reader sees it: NFC, without invisible characters (format
    characters, Cf, and the others :func:`looks_like_nothing` names)."""
    if _SURROGATE.search(text):  # (NFC cannot take one; the checks refuse it)
        return text
    text = unicodedata.normalize("NFC", text)
    if _all_visible(text):
        return text
    return "".join(ch for ch in text if not looks_like_nothing(ch))


# Control and format characters, line and paragraph separators, private-use code
# points (a box, or a font's own icon); and what shows nothing: letters that look like
# nothing, marks that change nothing a reader sees (variation selectors, Mongolian free
# variation selectors, Khmer inherent vowels, the Khitan filler), the code points Unicode
# keeps unassigned to be ignored (U+2065, U+FFF0-FFF8, U+E0000-E0FFF) and the
# noncharacters. Other code points Python's Unicode data does not know yet are letters
# of a newer Unicode (CJK extension H, say): they are kept.
_INVISIBLE = ("Cc", "Cf", "Zl", "Zp", "Co")
_SHOWS_NOTHING = re.compile(
    "[\u034f\u115f\u1160\u2800\u3164\uffa0\u17b4\u17b5\u180b-\u180d\u180f"
    "\ufe00-\ufe0f\U00016fe4\U000e0100-\U000e01ef"
    "\u2065\ufff0-\ufff8\U000e0000-\U000e0fff\ufdd0-\ufdef\ufffe\uffff]"
)
_UNNAMED = {"Cc": "a control character", "Cn": "unassigned", "Co": "private use"}  # (no name)
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a pair: no character at all


def looks_like_nothing(ch: str) -> bool:
    """Whether ``ch`` is invisible: a control or format character, a separator of lines
    or paragraphs, a lone surrogate, or a letter or mark that shows nothing."""
    if unicodedata.category(ch) in _INVISIBLE or _SHOWS_NOTHING.match(ch) is not None:
        return True
    return ord(ch) & 0xFFFE == 0xFFFE  # a noncharacter at the end of any plane


def _all_visible(text: str) -> bool:
    """A quick yes for most texts: every character printable (``str.isprintable`` is
    false for every invisible category, and for spaces other than ASCII's) and none
    that shows nothing."""
    return text.isprintable() and _SHOWS_NOTHING.search(text) is None


def invisible_problem(text: str) -> str | None:
    """What is wrong with a name, key or path holding control or format characters (which
    look like nothing, or break files), or None."""
    if _all_visible(text):
        return None
    if (half := _SURROGATE.search(text)) is not None:
        return f"holds a lone surrogate U+{ord(half.group()):04X} at position {half.start() + 1}"
    for position, ch in enumerate(text, start=1):
        if looks_like_nothing(ch):
            return (
                f"holds an invisible character U+{ord(ch):04X} "
                f"({unicodedata.name(ch, _UNNAMED.get(unicodedata.category(ch), ''))}) "
                f"at position {position}"
            )
    return None


def strip_invisible(text: str) -> str:
    """``text`` without whitespace and invisible characters at either end (a header name
    copied with a zero-width space)."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or looks_like_nothing(text[start])):
        start += 1
    while end > start and (text[end - 1].isspace() or looks_like_nothing(text[end - 1])):
        end -= 1
    return text[start:end]


# Line breaks and tabs are how a script is written; any other control character (NUL,
# BEL, ESC, ...) comes from broken data and cannot be spoken; nor can half of a
# surrogate pair.
_UNSPEAKABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def control_problem(text: str) -> str | None:
    """What is wrong with a spoken text or title holding a control character other than
    a tab or a line break, or a lone surrogate (an escape that names no character), or
    None."""
    found = _UNSPEAKABLE.search(text)
    if found is None:
        return None
    ch, position = found.group(), found.start() + 1
    if unicodedata.category(ch) == "Cs":
        return (
            f"holds a lone surrogate U+{ord(ch):04X} at position {position}, "
            "which is no character (a broken \\u escape?)"
        )
    return (
        f"holds a control character U+{ord(ch):04X} at position {position}, "
        "which cannot be spoken (is the data file damaged?)"
    )


def is_truthy(rendered: str) -> bool:
    """The ``when`` rule: false when empty or false/0/no/none (any case), once stripped
    of whitespace and invisible characters (``"no\\u200b"`` is no)."""
    text = rendered.strip().lower()
    if not _all_visible(text):
        text = visible(text).strip()
    return text not in _FALSE_WORDS


def find_html_tag(text: str) -> str | None:
    """The first HTML tag in ``text``, or None."""
    match = HTML_TAG.search(text)
    return match.group(0) if match else None


SEGMENT_MAX_BYTES = 255  # a file name, on the usual file systems (ext4, APFS, NTFS)


def missing_file(written: str) -> str:
    r"""Why the file a manifest names (written as ``written``) was not found; a ``\``
    is said to be no folder separator here (SPEC §3: paths use ``/``)."""
    if "\\" in written:
        return f"file not found: {written} (write paths with '/': a '\\' is no folder separator)"
    return f"file not found: {written}"


def output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be an output path under output_dir, or None when it can."""
    if not path.strip():
        return "the output path is empty"
    if "\\" in path or _WINDOWS_DRIVE.match(path):
        return f"{path!r}: write output paths with '/' and without a drive letter"
    if path.startswith("/"):
        return f"{path!r} is absolute; write a path relative to output_dir"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return f"{path!r} leaves output_dir"
    if not parts or path.endswith(("/", "/.")) or path == ".":
        return f"{path!r} names a folder, not a file"
    if any(part != part.strip() for part in parts):
        return f"{path!r}: a path segment starts or ends with a space"
    if (problem := invisible_problem(path)) is not None:
        return f"the output path {problem}"
    if long := next((p for p in parts if len(p.encode("utf-8")) > SEGMENT_MAX_BYTES), None):
        return (
            f"the output path segment {shorten(long)!r} is {len(long.encode('utf-8'))} bytes "
            f"in UTF-8; file systems take at most {SEGMENT_MAX_BYTES}"
        )
    return None


def normalize_output(path: str) -> str:
    """``./a//b.mp4`` -> ``a/b.mp4`` (call after :func:`output_path_problem` passed)."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def api_string(value: float) -> str:
    """A voice edit value as the API's string: ``1`` -> ``"1.0"``, ``1.1`` -> ``"1.1"``."""
    return repr(float(value))


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a message, marked with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
