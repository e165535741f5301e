"""Data sources: CSV and JSON Lines (UTF-8 with or without BOM), inline rows, keys, when."""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.commands.validate import validate
from hifly_batch.manifest.data import csv_rows, jsonl_rows, read_text_utf8
from hifly_batch.manifest.diagnostics import Collector
from hifly_batch.manifest.loader import load_campaign
from tests.campaigns import cli
from tests.manifest_helpers import BASE, campaign, run


def test_csv_with_bom_and_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes('\ufeffid,text\n1,"two\nlines"\n\n2,x\n'.encode())
    errors = Collector()
    text = read_text_utf8(path, "d.csv", "data.d.csv", errors)
    assert text is not None
    rows = csv_rows(text, "d.csv", "data.d.csv", errors)
    assert not errors
    assert [(r.index, r.location.line, r.values["id"]) for r in rows] == [(1, 2, "1"), (2, 5, "2")]


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"id,name\n1,ok\n2," + "张".encode("gbk") + b"\n")
    errors = Collector()
    assert read_text_utf8(path, "d.csv", "data.d.csv", errors) is None
    (diagnostic,) = errors.diagnostics
    assert (diagnostic.location.line, diagnostic.location.col) == (3, 3)
    assert "save it as UTF-8" in diagnostic.message


def test_jsonl_rows_and_errors() -> None:
    errors = Collector()
    rows = jsonl_rows('{"a": 1}\n\n[1]\n{"a": \n', "d.jsonl", "f", errors)
    assert [r.location.line for r in rows] == [1]
    assert [d.location.line for d in errors.diagnostics] == [3, 4]


def test_jsonl_keeps_json_types_and_refuses_what_json_does_not_have() -> None:
    errors = Collector()
    text = '{"n": 1.50, "ok": true}\n{"n": NaN}\n{"n": -Infinity}\n{"n": Infinity}\n'
    rows = jsonl_rows(text, "d.jsonl", "f", errors)
    assert [r.values for r in rows] == [{"n": 1.5, "ok": True}]
    said = [(d.location.line, d.message) for d in errors.diagnostics]
    assert said == [
        (2, "NaN is not JSON; write a number or text"),
        (3, "-Infinity is not JSON; write a number or text"),
        (4, "Infinity is not JSON; write a number or text"),
    ]


def test_inline_rows_and_when(tmp_path: Path) -> None:
    manifest = """\
version: 1
data:
  people:
    rows:
      - {id: a, go: "yes"}
      - {id: b, go: "no"}
      - {id: c, go: "  FALSE "}
      - {id: d, go: "1"}
    key: "{{ row.id }}"
voices:
  v: {public: 公共声音1}
audios:
  hello:
    for_each: people
    when: "{{ row.go }}"
    voice: v
    text: "你好 {{ key }} {{ index }}"
"""
    path = tmp_path / "inline.yaml"
    path.write_text(manifest, encoding="utf-8")
    loaded = load_campaign(path)
    assert [(w.key, w.index, w.text) for w in loaded.works] == [
        ("a", 1, "你好 a 1"),
        ("d", 4, "你好 d 4"),
    ]
    assert [w.output for w in loaded.works] == ["audios/hello/a.mp3", "audios/hello/d.mp3"]
    # The rows left out make no work; they are kept, named from the manifest's folder.
    assert [(s.item_id, str(s.source)) for s in loaded.skipped] == [
        ("audios.hello[b]", "inline.yaml:6:9"),
        ("audios.hello[c]", "inline.yaml:7:9"),
    ]


def test_duplicate_keys_name_both_rows(tmp_path: Path) -> None:
    csv = "customer_id,name,city\nc1,A,x\nc2,B,y\nc1,C,z\n"
    path = campaign(tmp_path, csv=csv)
    result = run(validate, [path])
    assert result.code == 2
    line = result.err.splitlines()[0]
    assert line.startswith(f"{tmp_path / 'customers.csv'}:4:1: data.customers.key: duplicate key")
    assert "row 1 at line 2" in line


def test_keys_are_computed_before_when(tmp_path: Path) -> None:
    csv = "customer_id,name,city\nc1,A,x\nc1,B,y\n"
    path = campaign(
        tmp_path,
        csv=csv,
        replace={
            "    for_each: customers\n": (
                "    for_each: customers\n    when: \"{{ row.name == 'A' }}\"\n"
            )
        },
    )
    assert run(validate, [path]).code == 2


def test_csv_headers_are_stripped_and_a_spreadsheets_empty_columns_ignored() -> None:
    errors = Collector()
    rows = csv_rows("customer_id , name ,,\nc1,张伟,,\nc2, Alice ,,\n", "d.csv", "f", errors)
    assert not errors.diagnostics
    assert [dict(r.values) for r in rows] == [
        {"customer_id": "c1", "name": "张伟"},
        {"customer_id": "c2", "name": " Alice "},  # values are kept as written
    ]


def test_a_column_without_a_name_that_holds_a_value_is_an_error_at_its_row() -> None:
    errors = Collector()
    assert csv_rows("id,name,\nc1,张伟,\nc2,李娜,VIP\n", "d.csv", "data.d.csv", errors) == []
    ((where, message),) = [(d.location.line, d.message) for d in errors.diagnostics]
    assert where == 3 and message == "column 3 has no name in the header, but this row holds 'VIP'"


@pytest.mark.parametrize(("text", "delimiter"), [("id;name\nc1;张伟\n", ";"),
                                                 ("id\tname\nc1\t张伟\n", "\t")])  # fmt: skip
def test_a_csv_separated_otherwise_is_read_with_its_delimiter_and_said_without(
    text: str, delimiter: str
) -> None:
    errors = Collector()
    assert csv_rows(text, "d.csv", "data.d.csv", errors) == []
    (diagnostic,) = errors.diagnostics
    shown = "\\t" if delimiter == "\t" else delimiter
    assert f'add  delimiter: "{shown}"  to data.d' in diagnostic.message
    errors = Collector()
    rows = csv_rows(text, "d.csv", "data.d.csv", errors, delimiter)
    assert not errors.diagnostics
    assert [dict(r.values) for r in rows] == [{"id": "c1", "name": "张伟"}]


def test_a_misspelt_column_names_the_columns_there_are(tmp_path: Path) -> None:
    path = campaign(tmp_path, template="{{ row.custmer_id }}您好。\n")
    result = cli("validate", str(path))
    assert result.code == 2
    assert (
        "no column 'custmer_id' in this row; its columns are: customer_id, name, city "
        "(did you mean 'customer_id'?)"
    ) in result.stderr, result.stderr


def test_a_row_that_leaves_off_its_empty_unnamed_cells_is_whole() -> None:
    errors = Collector()
    rows = csv_rows("id,name,,\nc1,张伟,,\nc2,李娜\n", "d.csv", "f", errors)
    assert not errors.diagnostics
    assert [dict(r.values) for r in rows] == [
        {"id": "c1", "name": "张伟"},
        {"id": "c2", "name": "李娜"},
    ]
    short = csv_rows("id,name,nick\nc2,李娜\n", "d.csv", "f", errors)  # a named cell missing
    assert (
        short == [] and "this row has 2 fields, the header has 3" in errors.diagnostics[0].message
    )


def test_a_misspelt_column_in_the_key_names_the_columns_there_are(tmp_path: Path) -> None:
    path = campaign(tmp_path, replace={'"{{ row.customer_id }}"': '"{{ row.custmer_id }}"'})
    result = cli("validate", str(path))
    assert result.code == 2
    assert (
        "data.customers.key: undefined in template: no column 'custmer_id' in this row"
        in (result.stderr)
        and "(did you mean 'customer_id'?)" in result.stderr
    )


def test_a_json_object_naming_a_field_twice_is_refused_at_its_line() -> None:
    errors = Collector()
    assert jsonl_rows('{"id": 7, "name": "a", "id": 8}\n', "d.jsonl", "f", errors) == []
    (diagnostic,) = errors.diagnostics
    assert diagnostic.location.line == 1
    assert diagnostic.message == "'id' is given twice in one object; keep one"


def test_jsonl_lines_end_at_newlines_only_and_numbers_are_spoken_as_written() -> None:
    """U+2028, U+2029 and NEL are legal inside JSON strings: they split no line."""
    errors = Collector()
    text = '{"id": "a", "x": "one\u2028two\x85three\u2029"}\n{"id": "b", "p": 9.90, "q": 1e3}\n'
    first, second = jsonl_rows(text, "d.jsonl", "f", errors)
    assert not errors.diagnostics
    assert first.values["x"] == "one\u2028two\x85three\u2029"
    assert (second.location.line, str(second.values["p"]), str(second.values["q"])) == (
        2, "9.90", "1e3",
    )  # fmt: skip
    assert second.values["p"] * 2 == 19.8  # still a number for arithmetic


def test_a_jsonl_escape_naming_half_a_character_is_refused_at_its_line() -> None:
    errors = Collector()
    rows = jsonl_rows('{"id": "a"}\n{"id": "b", "x": "\\ud800"}\n', "d.jsonl", "f", errors)
    assert [r.values["id"] for r in rows] == ["a"]
    (diagnostic,) = errors.diagnostics
    assert diagnostic.location.line == 2 and "lone surrogate" in diagnostic.message


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        ('id,name\nc1,"open\nc2,x\nc3,y\n', 2, 'a quote (") opened in the row at line 2'),
        ('id,name\nc1,"x"y\n', 2, 'write a quote as ""'),
    ],
)
def test_csv_quoting_faults_are_errors_never_cells_read_another_way(
    text: str, line: int, said: str
) -> None:
    errors = Collector()
    csv_rows(text, "d.csv", "data.d.csv", errors)
    assert [(d.location.line, said in d.message) for d in errors.diagnostics] == [(line, True)]


def test_a_csv_header_name_loses_invisible_characters_around_it() -> None:
    errors = Collector()
    (row,) = csv_rows("\u200bid, name\u2060\nc1,张伟\n", "d.csv", "data.d.csv", errors)
    assert not errors.diagnostics and dict(row.values) == {"id": "c1", "name": "张伟"}


def test_a_misspelt_var_names_the_vars_there_are_and_a_nested_one_blames_no_row(
    tmp_path: Path,
) -> None:
    manifest = BASE.replace("vars: {brand: 飞影}", "vars: {brand: 飞影, offer: {percent: 5}}")
    path = campaign(tmp_path, manifest, template="{{ vars.brnad }}{{ row.name }}\n")
    said = run(validate, [path]).err
    assert "no var 'brnad'; vars are: brand, offer (did you mean 'brand'?)" in said, said
    path = campaign(tmp_path / "n", manifest, template="{{ vars.offer.pct }}{{ row.name }}\n")
    said = run(validate, [path]).err
    assert "has no attribute 'pct'" in said and "no column 'pct'" not in said, said


def test_a_csv_cell_past_the_field_limit_says_so() -> None:
    errors = Collector()
    csv_rows("id,note\nc1," + "x" * 200_000 + "\n", "d.csv", "data.d.csv", errors)
    (diagnostic,) = errors.diagnostics
    assert diagnostic.message == "a cell holds more than 131,072 characters"


def test_a_nested_row_value_missing_a_key_blames_no_column(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "d": {"x": 1}}\n', encoding="utf-8")
    manifest = BASE.replace("csv: customers.csv", "jsonl: p.jsonl").replace(
        "row.customer_id", "row.id"
    )
    said = run(validate, [campaign(tmp_path, manifest, template="{{ row.d.y }}\n")]).err
    assert "has no attribute 'y'" in said and "no column 'y'" not in said, said
    bare = BASE.replace("vars: {brand: 飞影}\n", "").replace("{{ vars.brand }}", "x")
    said = run(validate, [campaign(tmp_path / "b", bare, template="{{ vars.brand }}\n")]).err
    assert "no var 'brand'; there are no vars" in said, said
