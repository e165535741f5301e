"""The invalid-manifest corpus: one defect per file, each reported at its exact place.

Each file in ``tests/manifests/invalid/`` starts with a description line and
``# expect: FILE:LINE PATH`` (``@`` is the manifest itself, ``-`` no field path).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hifly_batch import cli
from hifly_batch.commands.validate import validate
from tests.manifest_helpers import INVALID, REPO, run

CASES = sorted(INVALID.glob("*.yaml"))


def expectation(case: Path) -> tuple[str, int, str]:
    """(file, line, field path) from the case's ``# expect:`` line."""
    line = case.read_text(encoding="utf-8").splitlines()[1]
    assert line.startswith("# expect: "), case
    where, path = line.removeprefix("# expect: ").split(" ", 1)
    file, number = where.rsplit(":", 1)
    shown = str(case) if file == "@" else str(case.parent / file)
    return shown, int(number), path


def assert_reported(stderr: str, case: Path) -> None:
    file, line, path = expectation(case)
    prefix = f"{file}:{line}:"
    hits = [
        text
        for text in stderr.splitlines()
        if text.startswith(prefix) and (path == "-" or f" {path}: " in text)
    ]
    assert hits, f"expected {prefix} {path} in:\n{stderr}"
    assert "Traceback" not in stderr


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_manifest_is_located(case: Path) -> None:
    result = run(validate, [case])
    assert result.code == 2
    assert result.out == ""
    assert_reported(result.err, case)


SUBPROCESS_CASES = ["yaml_duplicate_key", "data_not_utf8", "rendered_title_too_long"]


@pytest.mark.skipif("validate" not in cli.COMMANDS, reason="cli.py does not dispatch validate yet")
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_invalid_manifest_through_the_real_command(name: str) -> None:
    case = INVALID / f"{name}.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "hifly_batch", "validate", str(case)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert_reported(done.stderr, case)


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    from tests.manifest_helpers import campaign

    path = campaign(
        tmp_path,
        replace={
            "name: case": "name: case\nsetings: {}",
            "rate: 1.1": "rate: 9",
            "avatar: founder": "avatar: fonder",
        },
    )
    result = run(validate, [path])
    assert result.code == 2
    assert "setings: unknown key" in result.err
    assert "voices.cloned.rate: must be at most 2.0" in result.err
    assert (
        "videos.welcome.avatar: 'fonder' is not an avatar (did you mean 'founder'?)" in result.err
    )
    assert result.err.rstrip().endswith("3 errors")
