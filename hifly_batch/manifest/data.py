"""Row sources for ``for_each``: CSV, JSON Lines and inline rows, each row with its line."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hifly_batch.manifest.diagnostics import Collector, Location
from hifly_batch.manifest.templates import without_nulls
from hifly_batch.manifest.values import strip_invisible


@dataclass(frozen=True)
class RawRow:
    """A row before its key is computed: 1-based index, values, and where it is."""

    index: int
    values: Mapping[str, Any]
    location: Location


def read_text_utf8(path: Path, shown: str, field: str, errors: Collector) -> str | None:
    """The file's text (UTF-8, BOM dropped); a located error for any other encoding."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.add(Location(shown), field, f"cannot read the file: {exc.strerror or exc}")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = (
            f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8')"
        )
        errors.add(Location(shown, line, col), field, message)
        return None


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def csv_rows(
    text: str, shown: str, field: str, errors: Collector, delimiter: str = ","
) -> list[RawRow]:
    """Rows of a CSV text whose first record is the header (names stripped of whitespace
    and invisible characters). Columns with no name and no value in any row, as
    spreadsheets add, are left out. Quoting is strict: a quote left open or text after a
    closing quote is an error, never a cell read another way."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = _records(reader, shown, field, errors)
    header = next(records, None)
    if header is None:
        errors.add(Location(shown), field, "the CSV file is empty: it needs a header line")
        return []
    cells, line = header
    names = [strip_invisible(name) for name in cells]
    if not _header_ok(names, cells, delimiter, Location(shown, line), field, errors):
        return []
    body = list(records)
    if not _unnamed_columns_empty(names, body, shown, field, errors):
        return []
    rows: list[RawRow] = []
    for values, row_line in body:
        where = Location(shown, row_line)
        if len(values) < len(names) and not any(names[len(values) :]):
            values = values + [""] * (len(names) - len(values))  # its empty cells left off
        if len(values) != len(names):
            message = f"this row has {len(values)} fields, the header has {len(names)}"
            errors.add(where, field, message)
            continue
        named = {name: value for name, value in zip(names, values, strict=True) if name}
        rows.append(RawRow(len(rows) + 1, named, where))
    return rows


def _unnamed_columns_empty(
    names: list[str], body: list[tuple[list[str], int]], shown: str, field: str, errors: Collector
) -> bool:
    """A column with no name may be left out only if no row holds a value in it."""
    unnamed = [i for i, name in enumerate(names) if not name]
    for values, line in body:
        for i in unnamed:
            if i < len(values) and values[i].strip():
                message = f"column {i + 1} has no name in the header, but this row holds "
                errors.add(Location(shown, line), field, message + repr(values[i]))
                return False
    return True


def _records(
    reader: Any, shown: str, field: str, errors: Collector
) -> Iterator[tuple[list[str], int]]:
    """Non-blank records with the line each starts on."""
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if record and any(cell.strip() for cell in record):
                yield record, start
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            message = (
                f'a quote (") opened in the row at line {end + 1} is never closed, so '
                "the rest of the file would be one cell"
            )
            errors.add(Location(shown, end + 1), field, message)
        elif "field larger than field limit" in str(exc):
            message = f"a cell holds more than {csv.field_size_limit():,} characters"
            errors.add(Location(shown, reader.line_num), field, message)
        else:
            message = f'CSV error: {exc} (inside a quoted cell, write a quote as "")'
            errors.add(Location(shown, reader.line_num), field, message)


def _header_ok(
    names: list[str],
    cells: list[str],
    delimiter: str,
    where: Location,
    field: str,
    errors: Collector,
) -> bool:
    if len(names) == 1:
        for other, word in DELIMITERS.items():
            if other != delimiter and other in cells[0]:
                source = field.rsplit(".", 1)[0]
                shown = "\\t" if other == "\t" else other
                message = (
                    f"the header looks separated by {word}s ({cells[0][:40]!r}); "
                    f'add  delimiter: "{shown}"  to {source}'
                )
                errors.add(where, field, message)
                return False
    if not any(names):
        errors.add(where, field, "the header has no column names")
        return False
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            errors.add(where, field, f"the header names column {name!r} twice")
            return False
        seen.add(name)
    return True


def jsonl_rows(text: str, shown: str, field: str, errors: Collector) -> list[RawRow]:
    """Rows of a JSON Lines text: one object per non-blank line. Lines end at ``\\n``
    only: U+2028 and the other breaks ``str.splitlines`` knows are legal inside JSON
    strings. A number is spoken as written (``9.90``, ``1e3``)."""
    rows: list[RawRow] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(
                line, parse_constant=_not_json, parse_float=_finite, object_pairs_hook=_object
            )
        except _NotJson as exc:
            errors.add(Location(shown, number), field, str(exc))
            continue
        except json.JSONDecodeError as exc:
            errors.add(Location(shown, number, exc.colno), field, f"invalid JSON: {exc.msg}")
            continue
        except RecursionError:
            errors.add(Location(shown, number), field, "JSON nested too deeply")
            continue
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            errors.add(Location(shown, number), field, f"invalid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            errors.add(Location(shown, number), field, "each line must be a JSON object")
            continue
        if _has_lone_surrogate(value):
            message = "a \\u escape names half a character (a lone surrogate); fix the escape"
            errors.add(Location(shown, number), field, message)
            continue
        rows.append(RawRow(len(rows) + 1, without_nulls(value), Location(shown, number)))
    return rows


class _NotJson(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a name given twice would silently keep its last value."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise _NotJson(f"{name!r} is given twice in one object; keep one")
        found[name] = value
    return found


class WrittenNumber(float):
    """A JSON number with a fraction or exponent: a float for arithmetic, spoken as
    written (``9.90`` stays ``9.90``, ``1e3`` stays ``1e3``; a float would say ``9.9``
    and ``1000.0``)."""

    written: str

    def __new__(cls, text: str) -> WrittenNumber:
        number = super().__new__(cls, text)
        number.written = text
        return number

    def __str__(self) -> str:
        return self.written

    __repr__ = __str__


def _finite(text: str) -> float:
    """A JSON number too large for a float (``1e999``) is Infinity by another name."""
    number = WrittenNumber(text)
    if math.isinf(number):
        raise _NotJson(f"{text} is not JSON; write a number or text")
    return number


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a string (or name) that is no Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _not_json(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON (RFC 8259) does not have."""
    raise _NotJson(f"{name} is not JSON; write a number or text")


def inline_rows(rows: list[Mapping[str, Any]], locations: list[Location]) -> list[RawRow]:
    """Rows written in the manifest (already checked to be mappings by the schema)."""
    return [
        RawRow(i, values, where)
        for i, (values, where) in enumerate(zip(rows, locations, strict=True), start=1)
    ]
