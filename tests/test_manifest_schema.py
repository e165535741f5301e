"""The JSON Schema: shipped in the package, describing every property, in step with apispec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from hifly_batch.apispec import VOICE_EDIT_RANGES
from hifly_batch.manifest.schema import manifest_schema
from tests.manifest_helpers import REPO

TOP = REPO / "schemas" / "manifest.schema.json"
PACKAGED = REPO / "hifly_batch" / "schemas" / "manifest.schema.json"


def test_packaged_copy_is_identical() -> None:
    assert TOP.read_bytes() == PACKAGED.read_bytes()


def test_schema_is_valid_2020_12() -> None:
    schema = json.loads(TOP.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert manifest_schema() == schema


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_every_property_has_a_description() -> None:
    for where, node in _objects(manifest_schema()):
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{where}/properties/{name}"


def test_fixed_shape_objects_refuse_unknown_keys() -> None:
    for where, node in _objects(manifest_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, where


def test_voice_ranges_match_the_api() -> None:
    voice = manifest_schema()["properties"]["voices"]["additionalProperties"]["properties"]
    for name, (low, high) in VOICE_EDIT_RANGES.items():
        assert (voice[name]["minimum"], voice[name]["maximum"]) == (low, high)


def test_reserved_api_params_match_the_spec() -> None:
    reserved = manifest_schema()["$defs"]["api_params"]["propertyNames"]["not"]["enum"]
    assert set(reserved) == {
        "title", "text", "voice", "avatar", "audio_url", "video_url", "image_url",
        "file_id", "model", "voice_type", "rate", "volume", "pitch",
    }  # fmt: skip


def test_example_manifests_declare_the_schema() -> None:
    for manifest in (REPO / "manifests").glob("*.yaml"):
        first = manifest.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/manifest.schema.json"
