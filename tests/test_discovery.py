"""Finding a repository's manifests by their content, as ``validate --all-manifests``
(the pre-commit hook) does."""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.manifest.discovery import find_manifests, looks_like_manifest


@pytest.mark.parametrize(
    ("text", "manifest"),
    [
        ("# yaml-language-server: $schema=../schemas/manifest.schema.json\nname: x\n", True),
        ("version: 1\nvideos:\n  v: {avatar: a, voice: b, text: hi}\n", True),
        ("version: 1\naudios: {a: {voice: v, text: hi}\n", True),  # broken YAML: still found
        ("version: 1\nname: x\n", False),  # no section
        ("videos: {}\n", False),  # no version
        ("on: push\njobs:\n  version: 1\n  videos: []\n", False),  # nested keys only
        ("version: '3'\nservices: {}\n", False),  # docker compose
    ],
)
def test_a_manifest_is_known_by_its_schema_line_or_its_top_level_keys(
    text: str, manifest: bool
) -> None:
    assert looks_like_manifest(text) is manifest


def test_every_manifest_under_the_folder_is_found_but_not_in_hidden_folders(
    tmp_path: Path,
) -> None:
    manifest = "version: 1\nvideos: {}\n"
    for path in ("a.yaml", "deep/er/b.YML", ".hifly/c.yaml", "node_modules/d.yaml", "e.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(manifest, encoding="utf-8")
    (tmp_path / "ci.yml").write_text("jobs: {}\n", encoding="utf-8")
    found = [p.relative_to(tmp_path).as_posix() for p in find_manifests(tmp_path)]
    assert found == ["a.yaml", "deep/er/b.YML"]
