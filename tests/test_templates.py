"""Templates: sandboxed, strict, plain text, faults with their template line."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from hifly_batch.commands.validate import validate
from hifly_batch.manifest.templates import (
    TemplateFault,
    base_context,
    compile_template,
    without_nulls,
)
from tests.manifest_helpers import campaign, run

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ row.__class__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{% set x = ''.__class__ %}{{ x.__mro__ }}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 999999 }}",
    "{{ range(10**9) | list }}",
    "{{ ''.format.__self__ }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_refused(source: str) -> None:
    template = compile_template("line one\n" + source, "t.j2")
    with pytest.raises(TemplateFault) as caught:
        template.render({"row": {"name": "x"}})
    assert caught.value.line == 2


@pytest.mark.parametrize("source", ESCAPES[:4])
def test_sandbox_escape_in_a_manifest_is_a_located_error(tmp_path: Path, source: str) -> None:
    path = campaign(tmp_path, replace={'title: "欢迎{{ row.name }}"': f'title: "{source}"'})
    result = run(validate, [path])
    assert result.code == 2
    assert f"{path}:22:12: videos.welcome[c1].title: " in result.err
    assert "Traceback" not in result.err


def test_undefined_is_an_error_with_its_line() -> None:
    template = compile_template("a\nb\n{{ row.nope }}", "t.j2")
    with pytest.raises(TemplateFault) as caught:
        template.render({"row": {}})
    assert caught.value.line == 3
    assert "nope" in caught.value.message


def test_syntax_error_line() -> None:
    with pytest.raises(TemplateFault) as caught:
        compile_template("ok\n{{ x ", "t.j2")
    assert caught.value.line == 2


def test_plain_text_no_autoescape() -> None:
    assert compile_template("{{ x }}", "t").render({"x": "a & b < c"}) == "a & b < c"


def test_text_file_fault_names_file_line_and_field(tmp_path: Path) -> None:
    path = campaign(tmp_path, template="{{ row.name }}\n\n{{ row.missing }}\n")
    result = run(validate, [path])
    assert result.code == 2
    first = result.err.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'welcome.txt.j2'}:3:1: videos.welcome[c1].text_file: ")
    assert f"text_file at {path}:21:16" in first
    assert "row 'c1' at" in first


def test_context_has_row_key_index_vars_campaign(tmp_path: Path) -> None:
    from hifly_batch.manifest.loader import load_campaign

    template = "{{ row.name }}|{{ key }}|{{ index }}|{{ vars.brand }}|{{ campaign }}"
    loaded = load_campaign(campaign(tmp_path, template=template))
    texts = [w.text for w in loaded.works if w.section == "videos"]
    assert texts == ["张伟|c1|1|飞影|case", "Alice|c2|2|飞影|case", "李娜|c3|3|飞影|case"]


def test_include_and_import_read_template_files_of_the_manifests_folder_only(
    tmp_path: Path,
) -> None:
    from hifly_batch.manifest.loader import load_campaign

    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "footer.txt.j2").write_text("祝您愉快！\n", encoding="utf-8")
    (tmp_path / "parts" / "macros.j2").write_text(
        "{% macro hello(n) %}{{ n }}您好{% endmacro %}", encoding="utf-8"
    )
    template = (
        "{% import 'parts/macros.j2' as m %}{{ m.hello(row.name) }}。\n"
        "{% include 'parts/footer.txt.j2' %}"
    )
    (work, *_) = load_campaign(campaign(tmp_path, template=template)).works
    assert work.text == "张伟您好。\n祝您愉快！"

    outside = tmp_path.parent / f"{tmp_path.name}-outside.j2"
    outside.write_text("秘密", encoding="utf-8")
    (tmp_path / "parts" / "link.j2").symlink_to(outside)
    for name in (f"../{outside.name}", "parts/link.j2", str(outside), "parts/none.j2"):
        path = campaign(tmp_path, template=f"{{% include '{name}' %}}")
        result = run(validate, [path])
        assert result.code == 2, name
        assert f"no template file {name!r} in the manifest's folder" in result.err, result.err
        assert "秘密" not in result.err


def test_a_text_files_include_finds_a_file_beside_it_first(tmp_path: Path) -> None:
    from hifly_batch.manifest.loader import load_campaign

    path = campaign(tmp_path, template="{{ row.name }}您好。\n{% include 'footer.txt.j2' %}")
    (tmp_path / "footer.txt.j2").write_text("祝您愉快！", encoding="utf-8")
    (work, *_) = load_campaign(path).works
    assert work.text == "张伟您好。\n祝您愉快！"


def test_an_include_inside_an_included_file_finds_a_file_beside_it(tmp_path: Path) -> None:
    from hifly_batch.manifest.loader import load_campaign

    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "body.j2").write_text("正文。{% include 'end.j2' %}", encoding="utf-8")
    (tmp_path / "parts" / "end.j2").write_text("再见。", encoding="utf-8")
    path = campaign(tmp_path, template="{{ row.name }}您好。{% include 'parts/body.j2' %}")
    (work, *_) = load_campaign(path).works
    assert work.text == "张伟您好。正文。再见。"


def test_dict_keys_minus_a_list_keep_the_rows_order() -> None:
    """``-`` on dict keys made a set, whose order follows each process's string hashing:
    the text, and so the video paid for, changed from run to run."""
    row = {"id": "1", "h": "", "g": "", "f": "", "e": "", "d": "", "c": "", "b": ""}
    source = "{% for k in row.keys() - ['id'] %}{{ k }},{% endfor %}|{{ row.items() - [] }}"
    text = compile_template(source, "t.j2").render(base_context(row=row))
    assert text.startswith("h,g,f,e,d,c,b,|[('id', '1'), ('h', ''), ('g', '')"), text
    other = "{{ 5 - 3 }}|{{ ['a', 'b', 'a'] - row.keys() }}"
    assert compile_template(other, "t").render(base_context(row={"b": 1})) == "2|['a']"


OBJECTS = [
    "{{ lipsum | string }}",
    "{{ joiner() }}",
    "{{ row.keys }}",
    "{{ row.name.upper }}",
    "{{ range(3) | map('upper') }}",
    "{{ [row.get] }}",
    "{{ row.get ~ '' }}",
    "{{ [row.get] | join }}",
    "{{ [{'a': row.get}] | join(attribute='a') }}",
    "{{ '%s' % row.get }}",
    "{{ '%s' | format(row.get) }}",
    "{{ '{}'.format(row.get) }}",
    "{{ '{0[0]}'.format([row.get]) }}",
    "{{ row.get | pprint }}",
    "{{ row.get | tojson }}",
    "{{ row.get | upper }}",
    "{{ '-'.join([row.get]) }}",
    "{{ {'a': row.get} }}",
    "{{ row.keys() }}",
]


@pytest.mark.parametrize("source", OBJECTS)
def test_a_python_object_made_text_is_a_located_error(source: str) -> None:
    """Its text names where it lies in memory (or how a generator was made): new on
    every run, so every run would pay for the video again."""
    template = compile_template("line one\n" + source, "t.j2")
    with pytest.raises(TemplateFault, match="renders a Python object") as caught:
        template.render(base_context(row={"name": "x"}))
    assert caught.value.line == 2


NONES = [
    "{{ row.get('nick') ~ '' }}",
    "{{ row.get('nick') | string }}",
    "{{ [row.get('nick')] }}",
    "{{ '%s' % row.get('nick') }}",
    "{{ '%(nick)s' % {'nick': row.get('nick')} }}",
    "{{ '{}'.format(row.get('nick')) }}",
    "{{ row.get('nick') | upper }}",
    "{{ [row.get('nick')] | join }}",
    "{{ row.get('nick') | tojson }}",
]


@pytest.mark.parametrize("source", NONES)
def test_python_none_is_never_spoken(source: str) -> None:
    with pytest.raises(TemplateFault, match="a value rendered here is null"):
        compile_template(source, "t.j2").render(base_context(row={"name": "x"}))


@pytest.mark.parametrize("name", ["int", "float"])
def test_int_and_float_of_a_null_are_errors_not_zero(name: str) -> None:
    row = without_nulls({"x": None, "y": "12"})
    template = compile_template(f"{{{{ row.x | {name} }}}}", "t.j2")
    with pytest.raises(TemplateFault, match=f"{name} of a null value"):
        template.render({"row": row})
    ordinary = "{{ row.y | int + 1 }}|{{ 'a' | int(0) }}|{{ row.y | float }}|"
    ordinary += "{{ (row.x or 0) | int }}"
    assert compile_template(ordinary, "t.j2").render({"row": row}) == "13|0|12.0|0"


@pytest.mark.parametrize("value", ["", "1,299", "abc", "0x1F", "nan", "1e999", " "])
@pytest.mark.parametrize("name", ["int", "float"])
def test_int_and_float_of_what_is_no_number_are_errors_not_zero(name: str, value: str) -> None:
    """An empty cell is what a spreadsheet leaves for a missing amount: "0元" would be
    spoken. A default given on purpose is still taken."""
    template = compile_template(f"{{{{ row.v | {name} }}}}元", "t.j2")
    with pytest.raises(TemplateFault, match=f"{name} of .*, which is no number"):
        template.render({"row": {"v": value}})
    chosen = compile_template(f"{{{{ row.v | {name}(7) }}}}", "t.j2")
    assert chosen.render({"row": {"v": value}}) == "7"
    numbers = compile_template(f"{{{{ '12' | {name} }}}}|{{{{ '9.5' | {name} }}}}", "t.j2")
    assert numbers.render({}) == ("12|9" if name == "int" else "12.0|9.5")


def test_a_text_holding_a_memory_address_is_refused() -> None:
    """A backstop behind every route to text."""
    template = compile_template("{{ row.name }}", "t.j2")
    with pytest.raises(TemplateFault, match="memory address"):
        template.render({"row": {"name": "<function f at 0x7f3a2c1b5e40>"}})
    assert template.render({"row": {"name": "0x10 at 0x20"}}) == "0x10 at 0x20"


def test_the_vars_and_a_row_render_as_the_mappings_they_are() -> None:
    template = compile_template("{{ vars }}|{{ row }}", "t.j2")
    context = {"vars": MappingProxyType({"a": "1"}), "row": {"b": "2"}}
    assert template.render(context) == "{'a': '1'}|{'b': '2'}"
