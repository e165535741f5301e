"""The README's quickstart, run as a reader would: every command of its step-by-step block,
verbatim and in order, in a copy of the repository's campaigns, exits 0; and the
rehearsal it makes keeps apart from a real run's outputs and state (SPEC §4)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from hifly_batch.cli import main
from tests.campaigns import in_shell, reader_shell
from tests.readme import ROOT, code_blocks, readme_text, section, setup_commands


def quickstart_commands() -> list[str]:
    """The lines of the step-by-step section's ``sh`` block(s)."""
    blocks = code_blocks(section(readme_text(), "The quickstart, step by step"), "sh")
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_setup_command_is_a_step_of_the_quickstart() -> None:
    install, _ = setup_commands()
    run = install.split("&&", 1)[1].strip()
    assert run in [line.split("#")[0].strip() for line in quickstart_commands()]


def test_the_readme_quickstart_runs_in_order_and_keeps_the_rehearsal_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "repo"
    for folder in ("manifests", "examples"):
        skip = shutil.ignore_patterns(".hifly", "out", "*.sandbox.lock", "__pycache__")
        shutil.copytree(ROOT / folder, work / folder, ignore=skip)
    env = reader_shell(tmp_path)
    commands = quickstart_commands()
    assert len(commands) >= 3 and any(" run " in c for c in commands)
    for command in commands:
        done = in_shell(command, work, env)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

    manifest = "manifests/quickstart.yaml"
    out = work / "manifests" / "out"
    assert sorted(p.name for p in out.iterdir()) == ["quickstart.sandbox"]  # the real one: none
    with (out / "quickstart.sandbox" / "report.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["status"] for r in rows} == {"done"}
    assert (out / "quickstart.sandbox" / rows[-1]["output"]).is_file()

    # Without --sandbox, only a rehearsal has run: said so, with the command that reads it.
    monkeypatch.chdir(work)
    for command in ("status", "report"):
        code, _, err = in_process(capsys, command, manifest)
        assert code == 3, err
        assert "only a rehearsal has run for this manifest, recorded in " in err
        assert err.endswith(
            f"; add --sandbox to see it:\n  hifly-batch {command} --sandbox {manifest}\n"
        )
    assert not (out / "quickstart").exists()
    code, plan, err = in_process(capsys, "plan", manifest)
    assert code == 0 and "create" in plan  # the real run's plan: everything to make
    assert "only a rehearsal has run" in err and "--sandbox" in err

    (out / "quickstart.sandbox" / "report.csv").unlink()
    assert in_process(capsys, "report", "--sandbox", manifest)[0] == 0
    assert (out / "quickstart.sandbox" / "report.csv").is_file()  # the rehearsal's folder


def in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``hifly-batch ARGV`` run by :func:`hifly_batch.cli.main` here: code, stdout, stderr."""
    code = main(list(argv), env={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err
