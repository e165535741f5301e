"""Terminal output: a reader that goes away ends the output quietly, never the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hifly_batch import cli as cli_main
from tests.campaigns import Campaign, cli


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    campaign = Campaign(tmp_path_factory.mktemp("console") / "c", rows=30).write()
    assert cli("run", "--sandbox", "--no-progress", str(campaign.manifest)).code == 0
    return campaign


@pytest.mark.parametrize(
    "command",
    [["plan"], ["plan", "--json"], ["validate"], ["run", "--dry-run"], ["status"],
     ["status", "--json"], ["run", "--no-progress"], ["report"]],
)  # fmt: skip
def test_a_closed_pipe_ends_the_output_quietly_with_the_usual_exit_code(
    rehearsed: Campaign, tmp_path: Path, command: list[str]
) -> None:
    campaign = rehearsed
    sandbox = [] if command == ["validate"] else ["--sandbox"]  # validate has no API
    args = " ".join(
        [sys.executable, "-m", "hifly_batch", *sandbox, *command, str(campaign.manifest)]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIFLY_")}
    # head reads one line and exits; the command's next writes meet a closed pipe.
    script = f"{args} 2>{tmp_path / 'err'} | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], env=env, timeout=120)
    stderr = (tmp_path / "err").read_text()
    assert proc.returncode == 0, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr and "Broken" not in stderr


def test_ctrl_c_while_the_commands_load_is_an_interrupt_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def pressed() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", pressed)
    assert cli_main.main(["status", "c.yaml"]) == 130
    assert capsys.readouterr().err == "hifly-batch: interrupted\n"
