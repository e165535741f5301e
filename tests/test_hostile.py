"""Hostile inputs: what the other test files do not already prove.

Already proven elsewhere (not repeated here):
- unsafe YAML tags: ``test_manifest_yaml.py::test_refused`` and the corpus cases
  ``yaml_python_tag``, ``yaml_binary_tag``, ``yaml_custom_tag``;
- billion laughs and deep nesting in the loader: ``test_manifest_yaml.py``
  (``test_billion_laughs_is_refused_quickly``, ``test_deep_nesting_is_refused``);
- template escapes through ``__class__``, ``cycler``/``joiner``/``lipsum`` globals,
  huge ranges and powers: ``test_templates.py::test_sandbox_escapes_are_refused``;
- ``output: "../{{ key }}.mp4"``: corpus case ``output_escapes``;
- formula cells in the report: ``test_csv_report.py::test_formula_cells_are_escaped``;
- non-UTF-8 CSV: ``test_manifest_data.py::test_not_utf8_is_located`` and corpus
  ``data_not_utf8`` (also through the real command).

Added here: the bombs through the real command with time and memory measured,
further escapes, traversal by row values, symlinked output folders at download
time, formulas end to end, huge rows and lines, deeply nested JSON Lines.
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from hifly_batch import cli as cli_main
from hifly_batch.core.lifecycle import Status
from hifly_batch.manifest.templates import TemplateFault, compile_template
from hifly_batch.reports.csv_report import FORMULA_STARTS
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, creates, read_state
from tests.campaigns import cli as run_cli
from tests.manifest_helpers import campaign, run

BILLION_LAUGHS = "version: 1\n" + "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 12)]
)  # 10**12 strings if expanded
BOMBS = {
    "billion_laughs": BILLION_LAUGHS + "\n",
    "deep_flow_sequences": "version: 1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "deep_flow_mappings": "version: 1\nx: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
    "deep_block_mappings": "version: 1\n"
    + "".join(f"{' ' * i}k{i}:\n" for i in range(3000))
    + " " * 3000
    + "v: 1\n",
}


def validate_cli(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``hifly-batch validate path`` in a subprocess; returns it and its CPU seconds (CPU,
    not wall time: a busy machine slows the one, not the other)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "hifly_batch", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return done, cpu


@pytest.mark.parametrize("name", list(BOMBS))
def test_yaml_bombs_are_refused_quickly_by_the_real_command(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BOMBS[name], encoding="utf-8")
    plain = tmp_path / "plain.yaml"
    plain.write_text("version: 1\nname: plain\n", encoding="utf-8")
    _, baseline = validate_cli(plain)  # starting Python and loading hifly-batch
    done, seconds = validate_cli(path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{path}:") and "Traceback" not in done.stderr
    # Expanded, the bombs take hours; refused, about as long as a two-line manifest.
    assert seconds < baseline + 1.0, f"{name}: {seconds:.2f} s of CPU, baseline {baseline:.2f} s"


@pytest.mark.parametrize("name", list(BOMBS))
def test_yaml_bombs_are_refused_in_bounded_memory(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BOMBS[name], encoding="utf-8")
    tracemalloc.start()
    try:
        result = run(cli_main.main, ["validate", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.code == 2 and "internal error" not in result.err
    assert peak < 32 * 1024 * 1024, f"{name}: peak {peak / 1e6:.1f} MB"  # measured: 0.3-9 MB


ESCAPES = [
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ row|attr('__class__') }}",
    "{{ '{0.__class__}'.format(row) }}",
    "{{ '%s'.__mod__ }}",
    "{{ row.items.__self__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ config }}",
    "{{ request }}",
    "{% import 'os' as os %}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_more_template_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateFault):
        compile_template(source, "t.j2").render({"row": {"name": "x"}, "key": "k"})


@pytest.mark.parametrize("source", ESCAPES[:5])
def test_escapes_in_a_text_file_are_located_errors(tmp_path: Path, source: str) -> None:
    path = campaign(tmp_path, template="第一行\n" + source + "\n")
    result = run(cli_main.main, ["validate", str(path)])
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(f"{tmp_path / 'welcome.txt.j2'}:2:")


@pytest.mark.parametrize(
    ("city", "problem"),
    [("../../etc", "leaves output_dir"), ("/etc", "is absolute"), ("a/../../..", "leaves")],
)
def test_output_traversal_through_a_row_value_is_refused(
    tmp_path: Path, city: str, problem: str
) -> None:
    path = campaign(
        tmp_path,
        csv=f"customer_id,name,city\nc1,张伟,{city}\nc2,Alice,ok\n",
        replace={'title: "欢迎{{ row.name }}"': 'output: "{{ row.city }}/{{ key }}.mp4"'},
    )
    result = run(cli_main.main, ["validate", str(path)])
    assert result.code == 2
    (line,) = [text for text in result.err.splitlines() if "videos.welcome[c1].output" in text]
    assert problem in line and "row 'c1' at" in line and "customers.csv:2" in line
    assert "videos.welcome[c2]" not in result.err


def test_a_symlinked_output_folder_pointing_outside_is_refused_at_download(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign_ = Campaign(tmp_path / "c", rows=2).write()
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = campaign_.output_dir / "videos" / "welcome"
    folder.parent.mkdir(parents=True)
    folder.symlink_to(outside, target_is_directory=True)
    result = run_cli("run", "--no-progress", str(campaign_.manifest), sandbox=sandbox)
    assert result.code == 1 and "Traceback" not in result.stderr
    videos = [r for r in read_state(campaign_).values() if r.section == "videos"]
    assert all(r.status is Status.FAILED for r in videos)
    assert all("would be written outside" in (r.error_message or "") for r in videos)
    assert list(outside.iterdir()) == []
    folder.unlink()  # the fix: a real folder; the rerun fetches the works already made
    before = creates(sandbox)
    assert run_cli("run", "--no-progress", str(campaign_.manifest), sandbox=sandbox).code == 0
    assert creates(sandbox) == before


def test_a_symlinked_output_file_never_writes_through_the_link(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign_ = Campaign(tmp_path / "c", rows=1).write()
    victim = tmp_path / "victim.txt"
    victim.write_text("must stay as it is")
    target = campaign_.output_dir / "videos" / "welcome" / "c0001.mp4"
    target.parent.mkdir(parents=True)
    target.symlink_to(victim)
    result = run_cli("run", "--no-progress", str(campaign_.manifest), sandbox=sandbox)
    assert result.code in (0, 1) and "Traceback" not in result.stderr
    assert victim.read_text() == "must stay as it is"
    (record,) = [r for r in read_state(campaign_).values() if r.section == "videos"]
    if record.status is Status.DONE:  # the link was replaced by the file, not followed
        assert not target.is_symlink() and record.task_id is not None
        assert target.read_bytes() == sandbox.output_bytes(record.task_id)
    else:
        assert "outside" in (record.error_message or "")


FORMULA_KEYS = ["=cmd|'/C calc'!A0", "+SUM(1)", "-2+3", "@SUM(A1)", '=HYPERLINK("http://x")']


def test_formula_rows_reach_the_report_defused(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign_ = Campaign(
        tmp_path / "c", rows=1, extra_yaml='    output: "welcome/{{ index }}.mp4"\n'
    ).write()
    with (campaign_.root / "customers.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "name", "city"])
        writer.writerows([key, f"客户{n}", "上海"] for n, key in enumerate(FORMULA_KEYS))
    result = run_cli("run", "--no-progress", str(campaign_.manifest), sandbox=sandbox)
    assert result.code == 0, result.stderr
    with (campaign_.output_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    keys = {cell for cell in cells if cell.lstrip("'") in FORMULA_KEYS}
    assert keys == {"'" + key for key in FORMULA_KEYS}


HUGE_ROWS = {
    # name -> (CSV text, exit code): render, or fail with a located error
    "10000-character line in an unused column": (
        "customer_id,name,city,notes\nc1,张伟,上海," + "y" * 10_000 + "\n",
        0,
    ),
    "10000-character name in title and text": (
        "customer_id,name,city\nc1," + "张" * 10_000 + ",上海\n",
        2,
    ),
    "one-megabyte cell": ("customer_id,name,city\nc1,张伟," + "x" * 1_000_000 + "\n", 2),
    "5000 columns": (
        ",".join(["customer_id", "name", "city"] + [f"x{i}" for i in range(5000)])
        + "\nc1,张伟,上海,"
        + ",".join(["v"] * 5000)
        + "\n",
        0,
    ),
    "NUL byte in a cell": ("customer_id,name,city\nc1,张\x00伟,上海\n", 2),  # cannot be spoken
}


@pytest.mark.parametrize("name", list(HUGE_ROWS))
def test_huge_rows_render_or_fail_cleanly(tmp_path: Path, name: str) -> None:
    text, code = HUGE_ROWS[name]
    path = campaign(tmp_path, csv=text)
    started = time.process_time()  # CPU seconds: not slowed by a busy machine
    result = run(cli_main.main, ["validate", str(path)])
    assert time.process_time() - started < 10
    assert result.code == code, result.err[:500]
    assert "internal error" not in result.err and "Traceback" not in result.err
    if code == 2:
        assert result.err.startswith(str(tmp_path)), result.err[:300]


JSONL_MANIFEST = """\
version: 1
data:
  people:
    jsonl: people.jsonl
    key: "{{ row.id }}"
voices:
  v: {public: 公共声音1}
audios:
  hello:
    for_each: people
    voice: v
    text: "你好 {{ key }}"
"""


def test_deeply_nested_json_line_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a crash log stays in the test
    (tmp_path / "m.yaml").write_text(JSONL_MANIFEST, encoding="utf-8")
    (tmp_path / "people.jsonl").write_text(
        '{"id": "a"}\n{"id": "b", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8"
    )
    result = run(cli_main.main, ["validate", str(tmp_path / "m.yaml")])
    assert result.code == 2, result.err
    assert result.err.startswith(f"{tmp_path / 'people.jsonl'}:2:")
