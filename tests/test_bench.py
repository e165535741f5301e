"""The runner benchmarks still run and print every figure (small sizes; no verdict checked)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import pg

BENCH = Path(__file__).parent / "bench" / "bench_run.py"

# Taken at import, before the suite points TMPDIR into pytest's 0700 folders, where the
# benchmark's PostgreSQL server (run as the postgres user under root) could not go.
_TMP_ROOT = tempfile.gettempdir()


@pytest.mark.parametrize(
    ("args", "figures"),
    [
        (
            ["throughput", "--items", "40"],
            ["items per second", "API calls per item", "runner CPU per item", "file system"],
        ),
        (["makespan", "--items", "10"], ["floor max(longest, sum/C)", "ratio", "API calls"]),
        (
            ["callbacks", "--items", "12"],
            ["polling ", "callbacks ", "callbacks, 30% lost", "idle per slot and task"],
        ),
    ],
    ids=["throughput", "makespan", "callbacks"],
)
def test_runner_benchmark_prints_its_figures(
    args: list[str], figures: list[str], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    exits = re.findall(r"exit (\d+)", proc.stdout)
    assert exits and set(exits) == {"0"}, proc.stdout
    for figure in figures:
        assert figure in proc.stdout
    assert "verdict:" in proc.stdout


def test_lock_file_benchmark_prints_its_figures() -> None:
    bench = Path(__file__).parent / "bench" / "bench_lockfile.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--items", "300", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for figure in ("baseline: read every record", "x the baseline", "of the run", "(exit 0)"):
        assert figure in proc.stdout


def test_state_store_benchmark_prints_its_figures(tmp_path: Path) -> None:
    reason = pg.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    bench = Path(__file__).parent / "bench" / "bench_state.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--items", "30", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": _TMP_ROOT},
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"exit code +0 +0\n", proc.stdout), proc.stdout
    for figure in (
        "wall seconds",
        "runner CPU per item",
        "runner peak RSS",
        "record writes",
        "statements per state change",
        "PG CPU/item / SQLite CPU/item",
        "verdict:",
    ):
        assert figure in proc.stdout
