"""A newcomer's first two commands: clone the repository, make a fresh virtualenv, and run
the README's set-up commands exactly as written there.

Slow (it installs from PyPI); run it with ``pytest -m slow``. Inside the clone the test
command collects the whole suite (every test module imports with what was installed) and
runs the end-to-end tests of the documented examples; the rest of the suite is the outer
run's, on the same code.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme import ROOT, setup_commands

# Set for the inner test run; this test skips itself there (the inner run also has -m 'not slow').
INNER_RUN = "HIFLY_BATCH_FRESH_CLONE_INNER"
INNER_PYTEST_OPTIONS = "-m 'not slow' -x -q -p no:cacheprovider"
INNER_TESTS = "tests/test_docs.py tests/test_examples.py tests/test_init.py"


def shell(command: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``command`` in bash inside the clone's virtualenv; returns its output."""
    proc = subprocess.run(
        ["bash", "-c", f". .venv/bin/activate && {command}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{output[-6000:]}"
    return output


def clean_env() -> dict[str, str]:
    """The developer's environment without HIFLY_* settings or an active virtualenv."""
    skip = ("HIFLY_", "VIRTUAL_ENV", "PYTHONPATH", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


def check_quickstart(clone: Path) -> None:
    out = clone / "manifests" / "out" / "quickstart.sandbox"  # a rehearsal's outputs
    with (out / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["status"] for r in rows} == {"done"}, rows
    works = [r for r in rows if r["section"] in ("videos", "audios")]
    assert len(works) == 4  # three welcome videos and the greeting
    for row in works:
        assert (out / row["output"]).stat().st_size > 0, row["item"]
    assert (out / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(INNER_RUN)), reason="inside the fresh-clone test itself")
def test_readme_set_up_commands_work_in_a_fresh_clone(tmp_path: Path) -> None:
    install_and_run, install_and_test = setup_commands()
    clone = tmp_path / "hifly-batch"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    subprocess.run(["python3", "-m", "venv", str(clone / ".venv")], check=True, timeout=300)
    env = clean_env()

    output = shell(install_and_run, clone, env, timeout=900)
    assert "report: " in output
    check_quickstart(clone)

    inner = {**env, INNER_RUN: "1"}
    options = f"{INNER_PYTEST_OPTIONS} {INNER_TESTS}"
    output = shell(install_and_test, clone, {**inner, "PYTEST_ADDOPTS": options}, timeout=900)
    assert " passed" in output and " failed" not in output
    collected = shell("pytest --collect-only -q -p no:cacheprovider", clone, inner, timeout=300)
    summary = collected.strip().splitlines()[-1]  # "N tests collected in …", or errors
    assert re.fullmatch(r"\d+ tests collected in .*", summary), collected[-3000:]
