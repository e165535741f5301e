"""Bounded rendering: templates that would take the machine's memory or time are refused
with a located error, quickly; ordinary loops, filters and formats still work."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hifly_batch.manifest import budget
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.templates import TemplateFault, base_context, compile_template
from tests.bench.bench_templates import TEMPLATES
from tests.campaigns import cli
from tests.manifest_helpers import BASE, campaign

HOSTILE = {name: source for name, source in TEMPLATES.items() if "baseline" not in name}
SAID = {
    "replace bomb": "replace would make 10,000,000,000 characters",
    "center(1e9)": "center would make 1,000,000,001 characters",
    "indent(4e9)": "indent would make",
    "nested range loops": "the template loops more than 100,000 times",
    "% width": "% asks for a width of more than 1,000,000 characters",
    "str.format width": "str.format asks for a width of more than 1,000,000 characters",
    "format filter width": "format asks for a width of more than 1,000,000 characters",
    "join of a range": "join would make",
    "ljust(1e9)": "ljust would make 1,000,000,000 characters",
    "macro recursion": "the template calls itself without end",
    "exponential macros": "the template runs for more than 1 s",
    "~ doubling": "the template makes more than 1,000,000 characters",
    "namespace doubling": "the template makes more than 1,000,000 characters",
    "+ doubling": "+ would make 2,000,000 characters",
    "str.format width argument": "str.format asks for a width of more than 1,000,000",
    "nested list product": "* would make 1,000,001,000,000 characters or elements",
    "lipsum(200000)": "lipsum makes a different text on every run",
    "wordwrap(1) of 1 MB": "wordwrap takes at most 10,000 characters",
    "tower of powers": "the power is too large a number",
    "captured block of 3 GB": "the template builds more than 10,000,000 characters in all",
    "values each under 1 MB": "the template builds more than 10,000,000 characters in all",
    "% doubling": "% would make 1,048,580 characters",
    "format doubling": "format would make 1,048,580 characters",
    "str.format doubling": "str.format would make 1,048,580 characters",
    "str.format 6-digit widths": "str.format would make 1,999,998,000 characters",
    "translate to 1 MB a character": "translate would make 1,999,998,000 characters",
    "str.join of a text": "join would make 10,000,300,000 characters",
    "list.extend doubling": "extend would make 1,048,576 characters",
    "sum of 400,000 lists": "the template loops more than 100,000 times",
    "10-million-element list | pprint": "pprint would make more than 1,000,000 characters of text",
    "10-million-element list {{ }}": "this output would make more than 1,000,000 characters",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_template_past_a_bound_is_refused_saying_which(name: str) -> None:
    template = compile_template(HOSTILE[name], "t.j2")
    with pytest.raises(TemplateFault) as caught:
        template.render(base_context())
    assert SAID[name] in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("{{ '%05.2f' % 3.14159 }}|{{ '{:,}'.format(1234567) }}", "03.14|1,234,567"),
        ("{{ 'a-b'|replace('-', '+') }}|{{ 'x'|center(5) }}|{{ [1, 2]|join }}", "a+b|  x  |12"),
        ("{{ 'ab'.ljust(4, '.') }}|{{ '%s和%s'|format('甲', '乙') }}", "ab..|甲和乙"),
        ("{% macro f(n) %}{% if n %}{{ n }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(3) }}", "321"),
        ("{% for r in rows %}{{ loop.index }}{{ r }}{% endfor %}", "1a2b"),
        ("{{ 'a' ~ 1 ~ 'b' }}|{{ '{:>{}}'.format('x', 3) }}|{{ [1] + [2] }}", "a1b|  x|[1, 2]"),
        ("{{ 2 ** 10 }}|{{ ('ab' * 2) | wordwrap(2) }}", "1024|ab\nab"),
    ],
)  # fmt: skip
def test_ordinary_templates_render_as_before(source: str, expected: str) -> None:
    context = base_context(rows=["a", "b"])
    assert compile_template(source, "t.j2").render(context) == expected


def test_a_refused_template_is_a_located_validate_error(tmp_path: Path) -> None:
    path = campaign(tmp_path, template="第一行\n{{ 'x'|center(1000000000) }}\n")
    result = cli("validate", str(path))
    assert result.code == 2
    where = f"{tmp_path / 'welcome.txt.j2'}:2:1: videos.welcome[c1].text_file: refused: center"
    assert where in result.stderr, result.stderr


def test_a_template_out_of_time_is_run_once_not_for_every_row(tmp_path: Path) -> None:
    slow = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    template = compile_template(slow, "t.j2")
    for _ in range(3):
        with pytest.raises(TemplateFault, match="runs for more than 1 s"):
            template.render(base_context())
    assert template.spend.renders == 1  # the later rows were refused without running


def test_the_template_benchmark_prints_its_figures() -> None:
    bench = Path(__file__).parent / "bench" / "bench_templates.py"
    proc = subprocess.run([sys.executable, str(bench), "--only", "replace bomb"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("plain (baseline)", "replace bomb", "peak RSS", "x the", "verdict: holds"):
        assert figure in proc.stdout


def test_renders_share_a_time_allowance_so_many_rows_cannot_add_up_to_minutes(
    tmp_path: Path,
) -> None:
    # Each render stays inside its own bounds (a 99,000-turn loop, well under 1 s), but
    # 5,000 rows of it would take minutes: the renders after the first second or so are
    # refused, each row naming the fault.
    csv = "customer_id,name,city\n" + "".join(f"c{i},n{i},x\n" for i in range(5000))
    slow = "{% for i in range(99000) %}{% endfor %}{{ row.name }}"
    result = cli("validate", campaign(tmp_path, template=slow, csv=csv))
    assert result.code == 2
    assert "ms a render on average over many rows" in result.stderr, result.stderr[-2000:]
    assert "c4999" in result.stderr or "more rows with errors" in result.stderr


def test_a_template_within_its_allowance_renders_every_row(tmp_path: Path) -> None:
    template = compile_template("{% for i in range(50) %}{{ i }}{% endfor %}{{ row.n }}", "t.j2")
    for n in range(20_000):
        assert template.render(base_context(row={"n": n})).endswith(str(n))
    assert template.spend.renders == 20_000 and template.spend.fault is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "尊敬的用户，您的号码是 %s。" | format(row.phone) }}',
         "尊敬的用户，您的号码是 +8613800138000。"),
        ('{{ "%s，客服热线 4008123456。" % row.id }}', "c1，客服热线 4008123456。"),
        ('{{ "{}，订单 20240501001 已发货".format(row.id) }}', "c1，订单 20240501001 已发货"),
        ('{{ "%s 您好，电话 13800138000" | format(row.id) }}', "c1 您好，电话 13800138000"),
        ("{{ (row.id[1:] | int + 2000) * 1000 }} ms", "2001000 ms"),
        ("{{ '%(a)s-%(a)s' % {'a': 'q'} }}|{{ '%*d|%-4s|' % (3, 7, 'ab') }}", "q-q|  7|ab  |"),
        ("{{ '{0:0>5}|{1:.2f}|{x[1]}'.format(7, 2.5, x=[0, 'y']) }}", "00007|2.50|y"),
        ("{{ ([[row.id]] * 100000) | sum(start=[]) | length }}", "100000"),
    ],
)  # fmt: skip
def test_digits_in_texts_and_values_are_not_widths(source: str, expected: str) -> None:
    """A width is what a format asks for, not any 7-digit run; a product of two numbers is
    a number (bounded by its bits), not a text; a sum of lists takes linear time."""
    row = {"id": "c1", "phone": "+8613800138000"}
    template = compile_template(source, "t.j2")
    started = time.monotonic()
    assert template.render(base_context(row=row)) == expected
    assert time.monotonic() - started < 1.0


def test_a_product_of_numbers_is_bounded_by_its_bits() -> None:
    squares = (
        "{% set ns = namespace(n=2 ** 60) %}"
        "{% for i in range(30) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 1 }}"
    )
    template = compile_template(squares, "t.j2")
    with pytest.raises(TemplateFault, match="the product is too large a number"):
        template.render(base_context())


def test_a_render_that_never_looks_at_the_clock_still_shares_the_allowance() -> None:
    """One slow filter a render and no loop: each render is refused at its start once
    the renders before used up the template's time, and one that overran at its end."""
    # Every row the same length, under urlize's own limit, however fast the machine.
    template = compile_template('{{ ((row.n + " ") * 24000) | urlize | length }}', "t.j2")
    started, refused = time.monotonic(), 0
    for n in range(60):
        try:
            template.render(base_context(row={"n": f"a{n:02d}"}))
        except TemplateFault as exc:
            assert "ms a render on average over many rows" in exc.message
            refused += 1
    assert refused > 0 and time.monotonic() - started < 3.0


def test_the_templates_of_a_manifest_share_an_allowance_so_many_items_cannot_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty items, each template well inside its own second: the manifest's renders
    share one allowance too (made small here), and the items past it are refused."""
    monkeypatch.setattr(budget, "CAMPAIGN_SECONDS", 0.2)
    slow = '{% for i in range(3000) %}{% set x = (i ~ "abc") | upper %}{% endfor %}'
    items = "".join(
        f"  v{i}:\n    avatar: founder\n    voice: narrator\n    text: '{slow}{i}'\n"
        for i in range(30)
    )
    path = campaign(tmp_path, BASE.replace("videos:\n", "videos:\n" + items))
    with pytest.raises(ManifestInvalid) as caught:
        load_campaign(path)
    said = [d.message for d in caught.value.diagnostics]
    assert any("the manifest's templates took" in m for m in said), said
    assert not any("runs for more than" in m for m in said)


def test_a_manifest_averages_a_fraction_of_a_templates_allowance_a_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows, each render well inside its template's 2 ms: the manifest's renders
    together are held to CAMPAIGN_ROW_SECONDS each on average (made tiny here)."""
    monkeypatch.setattr(budget, "CAMPAIGN_SECONDS", 0.05)
    monkeypatch.setattr(budget, "CAMPAIGN_ROW_SECONDS", 0.000001)
    csv = "customer_id,name,city\n" + "".join(f"c{i},n{i},x\n" for i in range(3000))
    slow = "{% for i in range(30) %}{{ i }}{% endfor %}{{ row.name }}\n"
    with pytest.raises(ManifestInvalid) as caught:
        load_campaign(campaign(tmp_path, template=slow, csv=csv))
    said = [d.message for d in caught.value.diagnostics]
    assert any("the manifest's templates took" in m for m in said), said[:3]


def test_text_that_reads_as_a_number_is_not_repeated_by_star() -> None:
    template = compile_template("{{ row.qty * 2 }}", "t.j2")
    with pytest.raises(TemplateFault, match=r"'9' \* 2 repeats the text '9'.*\| int \* 2"):
        template.render(base_context(row={"qty": "9"}))
    assert (
        compile_template("{{ '-' * 3 }}{{ row.qty | int * 2 }}", "t.j2").render(
            base_context(row={"qty": "9"})
        )
        == "---18"
    )
    with pytest.raises(TemplateFault, match=r"for arithmetic add `\| int`"):
        compile_template("{{ row.qty + 1 }}", "t.j2").render(base_context(row={"qty": "9"}))
