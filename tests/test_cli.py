"""The command line's surface: each command takes the global options that mean something
to it, before or after its name, and a meaningless one is a usage error naming the
commands that take it."""

from __future__ import annotations

import argparse

import pytest

from hifly_batch.cli import build_parser, commands_of, parse, with_option
from tests.campaigns import cli

PARSER = build_parser()
GLOBAL = ("--base-url", "--sandbox", "--state", "-v", "-q", "--no-progress")
TAKES = {
    "init": {"-v", "-q"},
    "validate": {"-v", "-q"},
    "plan": {"-v", "-q", "--base-url", "--sandbox", "--state"},
    "run": {"-v", "-q", "--base-url", "--sandbox", "--state", "--no-progress"},
    "status": {"-v", "-q", "--sandbox", "--state"},
    "report": {"-v", "-q", "--sandbox", "--state"},
    "voices": {"-v", "-q", "--base-url", "--sandbox"},
    "credit": {"-v", "-q", "--base-url", "--sandbox"},
    "state copy": {"-v", "-q", "--sandbox"},  # its own: the rehearsal's records
    "sandbox serve": {"-v", "-q"},
}


def global_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o in GLOBAL}


def test_each_command_takes_the_global_options_that_mean_something_to_it() -> None:
    found = {name: global_options(sub) for name, sub in commands_of(PARSER).items()}
    assert found == TAKES


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--sandbox", "run", "m.yaml"], {"sandbox": True}),
        (["run", "m.yaml", "--sandbox", "--no-progress"], {"sandbox": True, "no_progress": True}),
        (["--no-progress", "-v", "run", "-v", "m.yaml"], {"no_progress": True, "verbose": 1}),
        (["--state", "s.db", "status", "m.yaml"], {"state": "s.db", "sandbox": False}),
        (
            ["plan", "--base-url", "http://127.0.0.1:1", "m.yaml"],
            {"base_url": "http://127.0.0.1:1"},
        ),
        (["-q", "init", "d"], {"quiet": 1, "sandbox": False, "state": None, "base_url": None}),
        (["--sandbox", "state", "copy", "a", "b"], {"sandbox": True}),
        (["state", "copy", "a", "b"], {"sandbox": False}),
        (["-vv", "sandbox", "serve"], {"verbose": 2}),
    ],
)
def test_global_options_are_taken_before_or_after_the_command(
    argv: list[str], expected: dict[str, object]
) -> None:
    args = parse(PARSER, argv)
    assert {dest: getattr(args, dest) for dest in expected} == expected


@pytest.mark.parametrize(
    ("argv", "refusal"),
    [
        (["init", "--sandbox", "d"], "init takes no --sandbox; the commands that take it: "
         "plan, run, status, report, voices, credit, state copy"),
        (["--sandbox", "init", "d"], "init takes no --sandbox"),
        (["sandbox", "serve", "--sandbox"], "sandbox serve takes no --sandbox"),
        (["--state", "s.db", "validate", "m.yaml"], "validate takes no --state; the commands "
         "that take it: plan, run, status, report"),
        (["init", "d", "--state=s.db"], "init takes no --state"),
        (["status", "--base-url", "http://x", "m.yaml"], "status takes no --base-url; the "
         "commands that take it: plan, run, voices, credit"),
        (["plan", "--no-progress", "m.yaml"], "plan takes no --no-progress; the commands that "
         "take it: run"),
        (["--no-progress", "report", "m.yaml"], "report takes no --no-progress"),
        (["credit", "--state", "s.db"], "credit takes no --state"),
    ],
)  # fmt: skip
def test_a_meaningless_global_option_is_a_usage_error_naming_who_takes_it(
    argv: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(PARSER, argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    command = refusal.split(" takes")[0]
    assert f"usage: hifly-batch {command} [-h]" in err and f"hifly-batch {command}: error: " in err
    assert refusal in err


def test_an_unknown_option_is_still_refused_with_the_commands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(PARSER, ["status", "m.yaml", "--bogus"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "usage: hifly-batch status" in err and "unrecognized arguments: --bogus" in err


def test_the_refusal_through_the_real_cli_is_exit_2_without_a_traceback() -> None:
    result = cli("init", "--sandbox", "new-folder")
    assert result.code == 2
    assert "hifly-batch init: error: init takes no --sandbox" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_top_level_help_says_which_commands_take_each_global_option() -> None:
    text = " ".join(PARSER.format_help().split())  # as one line, however it was wrapped
    assert "[plan, run, voices, credit]" in text  # --base-url
    assert "[plan, run, status, report, voices, credit, state copy]" in text  # --sandbox
    assert "terminal) [run]" in text  # --no-progress
    assert "only errors on stderr [every command]" in text


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["status", "m.yaml"], "hifly-batch status --sandbox m.yaml"),
        (
            ["-v", "report", "a b.yaml", "-o", "r.csv"],
            "hifly-batch -v report --sandbox 'a b.yaml' -o r.csv",
        ),
        (
            ["--state", "s.db", "status", "m.yaml"],
            "hifly-batch --state s.db status --sandbox m.yaml",
        ),
    ],
)
def test_the_command_to_use_instead_is_the_same_line_with_the_option(
    argv: list[str], line: str
) -> None:
    assert with_option(argv, parse(PARSER, argv).command, "--sandbox") == line
