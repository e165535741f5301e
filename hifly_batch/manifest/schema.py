"""The manifest's JSON Schema: loading it from the package and turning its errors into
located diagnostics that say what to do."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hifly_batch.manifest.diagnostics import Diagnostic, FieldPath, format_path
from hifly_batch.manifest.values import shorten
from hifly_batch.manifest.yamlload import YamlDocument

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}


@cache
def manifest_schema() -> dict[str, Any]:
    """The schema shipped inside the package (same bytes as ``schemas/manifest.schema.json``)."""
    text = (
        resources.files("hifly_batch")
        .joinpath("schemas/manifest.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(manifest_schema())


def schema_diagnostics(doc: YamlDocument) -> tuple[list[Diagnostic], set[FieldPath]]:
    """Every schema violation of ``doc``, located and explained, and the paths refused.

    A refused path is cut to its item (``("videos", "welcome")``) or setting, so
    that later checks skip what the schema already reported. A key the schema does not
    know, or a key it refuses, refuses nothing more: the later checks read only the keys
    they know, so the item's other faults are still found (SPEC §3, one pass).
    """
    found: list[Diagnostic] = []
    refused: set[FieldPath] = set()
    for error in _validator().iter_errors(doc.data):
        found.extend(_translate(error, doc))
        if not _only_a_key(error):
            refused.add(tuple(error.absolute_path)[:2])
    return found, refused


def _only_a_key(error: ValidationError) -> bool:
    return error.validator == "additionalProperties" or (
        "propertyNames" in error.absolute_schema_path
    )


def _translate(error: ValidationError, doc: YamlDocument) -> Iterator[Diagnostic]:
    path: FieldPath = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        yield _bad_key(error, doc, path)
    elif error.validator == "additionalProperties":
        yield from _unknown_keys(error, doc, path)
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield Diagnostic(doc.locate(path), format_path(path), f"missing required key {missing!r}")
    elif error.validator == "oneOf":
        yield _one_of(error, doc, path)
    else:
        message = _message(error)
        written = doc.written.get(path)
        if error.validator == "type" and written is not None and "string" in message:
            shown = _show(error.instance)
            message = f'expected a string; YAML reads {written} as {shown}: write "{written}"'
        yield Diagnostic(doc.locate(path), format_path(path), message)


def _bad_key(error: ValidationError, doc: YamlDocument, path: FieldPath) -> Diagnostic:
    key = error.instance
    spot = (*path, key) if isinstance(key, str) else path
    schema = error.schema if isinstance(error.schema, dict) else {}
    rule = schema.get("description", "")
    if error.validator == "not":
        message = f"key {key!r} is set by the tool and cannot be overridden here"
    else:
        message = f"key {key!r} is not allowed here ({_message(error)})"
    if rule and error.validator != "not":
        message += f": {rule}"
    return Diagnostic(doc.locate(spot, key=True), format_path(spot), message)


def _unknown_keys(
    error: ValidationError, doc: YamlDocument, path: FieldPath
) -> Iterator[Diagnostic]:
    known = sorted(error.schema.get("properties", {}))
    for key in error.instance:
        if key in known:
            continue
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(str(key), known, n=1)
        message += (
            f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
        )
        spot = (*path, key)
        yield Diagnostic(doc.locate(spot, key=True), format_path(spot), message)


def _one_of(error: ValidationError, doc: YamlDocument, path: FieldPath) -> Diagnostic:
    branches = error.schema.get("oneOf", []) if isinstance(error.schema, dict) else []
    choices = [b["required"][0] for b in branches if list(b) == ["required"]]
    where, shown = doc.locate(path), format_path(path)
    if choices and isinstance(error.instance, dict):
        present = [c for c in choices if c in error.instance]
        wanted = "exactly one of " + ", ".join(choices)
        if present:
            return Diagnostic(where, shown, f"give {wanted}, not several ({', '.join(present)})")
        return Diagnostic(where, shown, f"missing a source: give {wanted}")
    description = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    return Diagnostic(where, shown, f"{_show(error.instance)} is not valid: {description}")


def _message(error: ValidationError) -> str:
    """A plain sentence for the remaining validators."""
    value, expected = error.instance, error.validator_value
    kind = error.validator
    if kind == "type":
        names = [str(n) for n in (expected if isinstance(expected, list) else [expected])]
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return f"expected {wanted}, got {_show(value)}"
    if kind in ("enum", "const"):
        options = expected if kind == "enum" else [expected]
        return f"must be {' or '.join(json.dumps(o, ensure_ascii=False) for o in options)}"
    if kind == "minimum":
        return f"must be at least {expected}, got {value}"
    if kind == "maximum":
        return f"must be at most {expected}, got {value}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {expected}, got {value}"
    if kind == "maxLength":
        return f"at most {expected} characters, got {len(value)}: {shorten(value)!r}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"at least {expected} characters"
    if kind == "pattern":
        description = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
        shown = shorten(value) if isinstance(value, str) else value
        return f"{shown!r} is not valid" + (f": {description}" if description else "")
    return error.message


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {shorten(value)!r}"
    return f"{type(value).__name__} {value!r}"
