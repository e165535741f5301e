"""The CSV report: exact columns, BOM, formulas defused, round trip through csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.csv_report import COLUMNS, escape_cell, write
from hifly_batch.runner.state import Record

SPEC_COLUMNS = (
    "item, kind, section, key, status, task_id, resource_id, output, duration_s, "
    "attempts, error_code, error_message, started_at, finished_at, fingerprint"
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
    path = tmp_path / "out" / "report.csv"
    write(records, path)
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig", newline="")))
    assert [r["status"] for r in rows] == ["done", "failed", "uncertain"]
    assert rows[0]["key"] == '\'=HYPERLINK("x")' and rows[0]["duration_s"] == "12"
    assert rows[0]["finished_at"] == "1970-01-01T00:01:00+00:00"
    assert rows[1]["error_message"] == '声音与名人相似, "quoted"\nline'
    assert rows[1]["error_code"] == "1011" and rows[2]["task_id"] == ""
    assert list(path.parent.iterdir()) == [path]
