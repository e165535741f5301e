"""The located YAML loader: positions, duplicate keys, tags, aliases, depth."""

from __future__ import annotations

import time

import pytest

from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.yamlload import MAX_DEPTH, load_yaml, read_yaml


def errors_of(text: str) -> list[str]:
    with pytest.raises(ManifestInvalid) as caught:
        load_yaml(text, "m.yaml")
    return [str(d) for d in caught.value.diagnostics]


def test_values_and_positions() -> None:
    doc = load_yaml("a:\n  b: [1, x]\n  c: {d: 2.5}\n", "m.yaml")
    assert doc.data == {"a": {"b": [1, "x"], "c": {"d": 2.5}}}
    assert doc.locate(("a", "b", 1)).line == 2
    assert (doc.locate(("a", "c", "d")).line, doc.locate(("a", "c", "d")).col) == (3, 10)
    assert doc.locate(("a", "missing")).line == 1  # nearest enclosing: the key of "a"


def test_keys_stay_strings_and_dates_stay_text() -> None:
    doc = load_yaml("on: 2024-01-02\n1: yes\n", "m.yaml")
    assert doc.data == {"on": "2024-01-02", "1": True}


def test_merge_keys_and_anchors() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nitem:\n  <<: *b\n  y: 3\n", "m.yaml")
    assert doc.data["item"] == {"x": 1, "y": 3}
    assert doc.locate(("item", "y")).line == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", "m.yaml:3:1: a: duplicate key 'a' (first at line 1)"),
        ("x:\n  k: 1\n  k: 2\n", "m.yaml:3:3: x.k: duplicate key 'k' (first at line 2)"),
        ("a: !!python/object:os.system x\n", "m.yaml:1:4: a: tag !!python/object:os.system"),
        ("a: !!python/name:os.system\n", "m.yaml:1:4: a: tag !!python/name:os.system"),
        ("a: !custom 1\n", "m.yaml:1:4: a: tag !custom is not allowed"),
        ("a: !!set {x}\n", "m.yaml:1:4: a: tag !!set is not allowed"),
        ("a: [1\n", "m.yaml:2:1: YAML syntax error"),
        ("a: 1\n---\nb: 2\n", "YAML syntax error: expected a single document"),
        ("", "m.yaml:1:1: the file is empty"),
        ("a: &x [*x]\n", "recursive alias"),
        ("? [1]\n: 2\n", "a mapping key must be a plain scalar"),
    ],
)
def test_refused(text: str, expected: str) -> None:
    assert any(expected in line for line in errors_of(text)), errors_of(text)


def test_all_duplicates_at_once() -> None:
    assert len(errors_of("a: 1\na: 2\nb: 1\nb: 2\n")) == 2


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    start = time.process_time()  # CPU seconds: not slowed by a busy machine
    found = errors_of("\n".join(lines) + "\n")
    assert time.process_time() - start < 1.0  # expanded: 9**10 strings, hours
    assert "aliases expand this document" in found[0]


def test_deep_nesting_is_refused() -> None:
    text = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    assert "nested more than" in errors_of(text)[0]
    deep_flow = "a: " + "{b: " * 10_000 + "1" + "}" * 10_000
    assert "nested more than" in errors_of(deep_flow)[0]


def test_alias_depth_is_bounded() -> None:
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [[[[[[*a{i - 1}]]]]]]" for i in range(1, 15)]
    assert "levels" in errors_of("\n".join(lines) + "\n")[0]


def test_a_control_character_in_the_file_is_located_at_its_line_and_column() -> None:
    with pytest.raises(ManifestInvalid) as caught:
        load_yaml('version: 1\nname: x\nvars: {a: "\x07"}\n', "m.yaml")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.location.line, diagnostic.location.col) == (3, 12)
    assert "control character U+0007 is not allowed in a YAML file" in diagnostic.message


def test_api_params_are_read_by_yaml_1_2s_core_schema() -> None:
    """JSON values passed through: never YAML 1.1's booleans, octals or sexagesimals."""
    doc = load_yaml(
        "videos:\n  w:\n    api_params: {a: 012, b: 0x10, c: yes, d: 1:30, e: 0b11, f: true,"
        ' g: "012", h: ~, i: 1.5, j: on, k: 0o17}\n',
        "m.yaml",
    )
    assert doc.data["videos"]["w"]["api_params"] == {
        "a": 12, "b": 16, "c": "yes", "d": "1:30", "e": "0b11", "f": True,
        "g": "012", "h": None, "i": 1.5, "j": "on", "k": 15,
    }  # fmt: skip


def test_an_equals_sign_or_merge_key_as_a_value_is_text() -> None:
    doc = load_yaml("vars: {op: =, m: <<, n: [=]}\ntext: =\n", "m.yaml")
    assert doc.data == {"vars": {"op": "=", "m": "<<", "n": ["="]}, "text": "="}


def test_faults_of_values_are_kept_with_the_document_not_raised() -> None:
    doc = read_yaml("vars: {a: 1, a: 2}\nx: !!binary aGk=\n", "m.yaml")
    assert doc.data["vars"] == {"a": "1"}  # the first holds
    assert [d.message.split(" (")[0] for d in doc.faults] == [
        "duplicate key 'a'",
        "tag !!binary is not allowed",
    ]
    assert doc.refused == {("x",)}
