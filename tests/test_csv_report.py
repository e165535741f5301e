"""The CSV report: exact columns, BOM, formulas defused, round trip through csv; and the
report a real run writes, with each item's rendered title and text."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hifly_batch.core.graph import Item, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.csv_report import COLUMNS, escape_cell, write
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_mp4
from tests.campaigns import cli

SPEC_COLUMNS = (
    "item, kind, section, key, status, task_id, resource_id, output, duration_s, "
    "attempts, error_code, error_message, started_at, finished_at, fingerprint, title, text"
)


def test_columns_are_the_spec_columns_in_order() -> None:
    assert ", ".join(COLUMNS) == SPEC_COLUMNS


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("张三", "张三"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_formula_cells_are_escaped(cell: str, shown: str) -> None:
    assert escape_cell(cell) == shown


def test_written_report_reads_back(tmp_path: Path) -> None:
    records = [
        Record(
            item='videos.w[=HYPERLINK("x")]',
            section="videos",
            kind="video_tts",
            key='=HYPERLINK("x")',
            status=Status.DONE,
            task_id="t1",
            output="videos/w/a.mp4",
            duration_s=12.0,
            attempts=1,
            started_at=0.0,
            finished_at=60.0,
            fingerprint="ab",
        ),
        Record(
            item="videos.w[李四]",
            section="videos",
            kind="video_tts",
            key="李四",
            status=Status.FAILED,
            error_code=1011,
            error_message='声音与名人相似, "quoted"\nline',
        ),
        Record(
            item="videos.w[c]",
            section="videos",
            kind="video_tts",
            key="c",
            status=Status.SUBMITTING,
        ),
    ]
    items = {
        'videos.w[=HYPERLINK("x")]': Item(
            id='videos.w[=HYPERLINK("x")]',
            section="videos",
            name="w",
            kind=ItemKind.VIDEO_BY_TTS,
            request={"title": "@标题", "text": "-你好，\n世界"},
            fingerprint="ab",
            text="-你好，\n世界",
        )
    }
    path = tmp_path / "out" / "report.csv"
    write(records, items, path)
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode()) and raw.count(b"\r\n") == 4
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig", newline="")))
    assert [r["status"] for r in rows] == ["done", "failed", "uncertain"]
    assert rows[0]["key"] == '\'=HYPERLINK("x")' and rows[0]["duration_s"] == "12"
    assert rows[0]["finished_at"] == "1970-01-01T00:01:00+00:00"
    assert rows[1]["error_message"] == '声音与名人相似, "quoted"\nline'
    assert rows[1]["error_code"] == "1011" and rows[2]["task_id"] == ""
    assert (rows[0]["title"], rows[0]["text"]) == ("'@标题", "'-你好，\n世界")
    assert (rows[1]["title"], rows[1]["text"]) == ("", "")  # (no item: nothing to say)
    assert list(path.parent.iterdir()) == [path]


# --- the report a real run writes ------------------------------------------------

CAMPAIGN = """\
version: 1
name: said
settings: {poll_interval: 0.05s, poll_max: 0.5s, max_attempts: 1}
assets:
  clip: {file: clip.mp4}
data:
  customers:
    csv: customers.csv
    key: "{{ row.id }}"
avatars:
  founder: {video: clip, title: 创始人}
voices:
  announcer: {public: 公共声音1}
videos:
  welcome:
    for_each: customers
    when: "{{ row.opt_in }}"
    avatar: founder
    voice: announcer
    title: "{{ row.title }}"
    text: "{{ row.name }}您好，欢迎您。"
"""
CUSTOMERS = """\
id,name,title,opt_in
c1,张伟,欢迎张伟,yes
c2,Alice,=1+2,yes
c3,Bob,欢迎Bob,no
c4,李四,欢迎李四,no
"""


def test_run_reports_what_each_video_says_and_the_page_names_the_rows_when_left_out(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "said.yaml").write_text(CAMPAIGN, encoding="utf-8")
    (tmp_path / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (tmp_path / "clip.mp4").write_bytes(make_mp4(3.0, "clip"))
    result = cli("run", "--no-progress", str(tmp_path / "said.yaml"), sandbox=sandbox)
    assert result.code == 0, result.stdout + result.stderr
    report = Path(re.findall(r"^report: (.+)$", result.stdout, re.M)[0])
    raw = report.read_bytes()
    assert raw.startswith("\ufeff".encode()) and raw.count(b"\r\n") == 6  # header, 5 items
    with report.open(encoding="utf-8-sig", newline="") as fh:
        rows = {row["item"]: row for row in csv.DictReader(fh)}
    said = {item: (row["title"], row["text"]) for item, row in rows.items()}
    assert said == {  # rows c3 and c4 are filtered out: no item, no row
        "assets.clip": ("", ""),
        "avatars.founder": ("创始人", ""),
        "voices.announcer": ("公共声音1", ""),
        "videos.welcome[c1]": ("欢迎张伟", "张伟您好，欢迎您。"),
        "videos.welcome[c2]": ("'=1+2", "Alice您好，欢迎您。"),
    }
    page = report.with_suffix(".html").read_text("utf-8")
    written = re.search(r"Written <time datetime='([^']+)'>", page)
    assert written is not None
    age = datetime.now(timezone.utc) - datetime.fromisoformat(written.group(1))
    assert 0 <= age.total_seconds() < 120
    assert "<nav class='filter'" in page and "data-filter='done'" in page
    assert "c3 (customers.csv:4) — videos.welcome: when was false" in page
    assert "c4 (customers.csv:5) — videos.welcome: when was false" in page
    # The report command writes the same report from the state.
    again = tmp_path / "again.csv"
    assert cli("report", str(tmp_path / "said.yaml"), "-o", str(again)).code == 0
    assert again.read_bytes() == raw
    assert "c4 (customers.csv:5)" in again.with_suffix(".html").read_text("utf-8")
