"""Data sources with keys: rows read from CSV, JSON Lines or the manifest, each given
the key its ``key`` template renders (non-empty, unique, computed before ``when``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hifly_batch.manifest.data import RawRow, csv_rows, inline_rows, jsonl_rows, read_text_utf8
from hifly_batch.manifest.diagnostics import Collector, format_path
from hifly_batch.manifest.model import DataSource, Field, Row
from hifly_batch.manifest.templates import TemplateFault, compile_template
from hifly_batch.manifest.values import (
    columns_named,
    invisible_problem,
    missing_file,
    spoken,
    visible,
)
from hifly_batch.manifest.yamlload import YamlDocument


def build_sources(
    doc: YamlDocument,
    entries: list[tuple[str, dict[str, Any]]],
    root: Path,
    context: Mapping[str, Any],
    errors: Collector,
) -> dict[str, DataSource]:
    """Every data source in ``entries`` (name, raw mapping), rows keyed."""
    found = {}
    for name, raw in entries:
        raw_rows = _read_rows(doc, name, raw, root, errors)
        key_field = Field(str(raw["key"]), doc.locate(("data", name, "key")))
        rows = _keyed_rows(name, raw_rows, key_field, context, errors, root)
        found[name] = DataSource(name, doc.locate(("data", name)), tuple(rows))
    return found


def display(doc: YamlDocument, root: Path, relative: str) -> str:
    """A path written in the manifest, shown the way the manifest itself is shown."""
    return (Path(doc.file).parent / relative).as_posix()


def _read_rows(
    doc: YamlDocument, name: str, raw: dict[str, Any], root: Path, errors: Collector
) -> list[RawRow]:
    if "rows" in raw:
        locations = [doc.locate(("data", name, "rows", i)) for i in range(len(raw["rows"]))]
        return inline_rows(raw["rows"], locations)
    kind = "csv" if "csv" in raw else "jsonl"
    field = format_path(("data", name, kind))
    path = root / raw[kind]
    shown = display(doc, root, raw[kind])
    if not path.is_file():
        errors.add(doc.locate(("data", name, kind)), field, missing_file(raw[kind]))
        return []
    text = read_text_utf8(path, shown, field, errors)
    if text is None:
        return []
    if kind == "csv":
        return csv_rows(text, shown, field, errors, raw.get("delimiter", ","))
    return jsonl_rows(text, shown, field, errors)


def _keyed_rows(
    name: str,
    raw_rows: list[RawRow],
    key_field: Field,
    context: Mapping[str, Any],
    errors: Collector,
    root: Path,
) -> list[Row]:
    path = format_path(("data", name, "key"))
    shown = f"{key_field.location.file}:data.{name}.key"
    try:
        template = compile_template(key_field.text, shown, root)
    except TemplateFault as exc:
        errors.add(key_field.line_of(exc.line), path, exc.message)
        return []
    rows: list[Row] = []
    first_seen: dict[str, RawRow] = {}
    for raw in raw_rows:
        where = f"row {raw.index} at {raw.location.file}:{raw.location.line}"
        try:
            key = spoken(template.render({**context, "row": raw.values, "index": raw.index}))
        except TemplateFault as exc:
            message = f"{columns_named(exc.message, raw.values, context.get('vars'))} ({where})"
            errors.add_row_error(path, key_field.line_of(exc.line), path, message)
            continue
        if not key:
            errors.add(raw.location, path, f"the key is empty for {where}")
            continue
        seen_as = visible(key)  # keys that look the same are the same key
        if seen_as in first_seen:
            first = first_seen[seen_as]
            message = f"duplicate key {key!r}: {where} and row {first.index} at line "
            message += str(first.location.line)
            errors.add(raw.location, path, message)
            continue
        first_seen[seen_as] = raw
        if (problem := invisible_problem(key)) is not None:
            errors.add(raw.location, path, f"the key {problem} ({where})")
            continue
        rows.append(Row(raw.index, key, dict(raw.values), raw.location))
    return rows
