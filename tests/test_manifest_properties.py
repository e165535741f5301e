"""Property tests: random YAML and random rows are accepted or refused with located
diagnostics, never with a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hifly_batch.core.graph import build_graph
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.yamlload import load_yaml
from tests.manifest_helpers import BASE, campaign

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = ["version", "name", "settings", "vars", "assets", "data", "avatars", "voices", "videos",
        "audios", "concurrency", "file", "url", "csv", "rows", "key", "video", "audio", "text",
        "title", "for_each", "avatar", "voice", "rate", "api_params", "public", "id"]  # fmt: skip
manifest_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)


def assert_located(error: ManifestInvalid) -> None:
    assert error.diagnostics
    for diagnostic in error.diagnostics:
        text = str(diagnostic)
        assert diagnostic.location.line >= 1 and diagnostic.location.col >= 1
        assert text.startswith(f"{diagnostic.location.file}:{diagnostic.location.line}:")


def load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            build_graph(load_campaign(path))
        except ManifestInvalid as error:
            assert_located(error)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    try:
        load_yaml(text, "m.yaml")
    except ManifestInvalid as error:
        assert_located(error)


@SETTINGS
@given(manifest_like)
def test_random_structures_never_crash(document: object) -> None:
    load_text(yaml.safe_dump(document, allow_unicode=True))


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
def test_random_sections_on_a_valid_manifest(extra: dict[str, object]) -> None:
    data = yaml.safe_load(BASE)
    data["videos"]["welcome"].update(extra)
    load_text(yaml.safe_dump(data, allow_unicode=True).replace("customers.csv", "nothing.csv"))


row_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15
)


@SETTINGS
@given(st.lists(st.tuples(row_text, row_text, row_text), max_size=6))
def test_random_rows_never_crash(rows: list[tuple[str, str, str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["customer_id", "name", "city"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = campaign(Path(folder), csv=buffer.getvalue())
        try:
            graph = build_graph(load_campaign(path))
        except ManifestInvalid as error:
            assert_located(error)
        else:
            assert len({i.output for i in graph if i.output}) == sum(1 for i in graph if i.output)
