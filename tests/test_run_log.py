"""The run log: a DEBUG-level file per run, token-free, the last 20 kept, named when a run fails."""

from __future__ import annotations

import datetime
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hifly_batch.runner import run_log
from hifly_batch.sandbox import Faults, Sandbox
from tests.campaigns import Campaign, cli
from tests.conftest import SECRET_TOKEN

UNIT_SECRET = "hf-unit-0123456789abcdef"


def test_a_run_logs_at_debug_without_the_token_keeping_the_last_20_and_a_failed_one_says_where(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    logs = campaign.root / ".hifly" / "logs"
    logs.mkdir(parents=True)
    old = [logs / f"campaign-20200101T0000{n:02d}Z.log" for n in range(21)]
    others = [logs / "campaign-extra-20200101T000000Z.log", logs / "notes.txt"]
    for path in old + others:
        path.write_text("old\n")
    sandbox.set_faults(Faults(task_fail=1.0))  # every task fails: the run fails

    result = cli("run", str(campaign.manifest), sandbox=sandbox)  # the 22nd run

    assert result.code == 1, result.stderr
    named = result.stdout.splitlines()[-1]
    assert named.startswith("log: ")  # after the report's paths
    path = Path(named.removeprefix("log: "))
    assert run_log.campaign_logs(logs, "campaign") == [*old[2:], path]  # the last 20
    assert all(p.exists() for p in others)  # another campaign's logs, and other files, stay
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert " DEBUG " in text and "Bearer ***" in text  # every HTTP call, with its headers
    assert "PUT upload on 127.0.0.1 -> HTTP 200 in " in text  # a signed URL: its host alone
    assert "assets.founder_clip: done" in text and "avatars.founder: failed, code " in text
    assert "videos.welcome[c0002]: blocked" in text and "run ended: 2 done, 2 failed" in text
    assert SECRET_TOKEN not in text
    assert " DEBUG " not in result.stderr  # the terminal's level is its own


@pytest.fixture
def hifly_logger() -> Iterator[logging.Logger]:
    """The ``hifly_batch`` logger at WARNING with a handler as the CLI's, put back after."""
    logger = logging.getLogger("hifly_batch")
    saved = logger.handlers, logger.level, logger.propagate
    logger.setLevel(logging.WARNING)
    yield logger
    logger.handlers, level, logger.propagate = saved
    logger.setLevel(level)


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_log_cuts_the_token_and_url_queries_and_leaves_other_handlers_as_they_were(
    tmp_path: Path, hifly_logger: logging.Logger
) -> None:
    own, above = Collected(), Collected()  # the logger's handler, and one up the tree
    hifly_logger.handlers = [own]
    logging.getLogger().addHandler(above)
    log = logging.getLogger("hifly_batch.test")
    now = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    try:
        with run_log.recording(tmp_path, "camp", UNIT_SECRET, now=now) as path:
            log.debug("token %s in the arguments", UNIT_SECRET)
            log.info(f"token {UNIT_SECRET} in the message, http://h/o.mp4?sig=abc&exp=1 too")
            try:
                raise ValueError(UNIT_SECRET)
            except ValueError:
                log.debug("and in a traceback", exc_info=True)
            log.warning("a warning")
    finally:
        logging.getLogger().removeHandler(above)
    assert path == tmp_path / "logs" / "camp-20240506T070809Z.log"
    text = path.read_text(encoding="utf-8")
    assert UNIT_SECRET not in text and "sig=abc" not in text
    assert text.count("***") == 3 and "http://h/o.mp4?… too" in text
    assert " DEBUG hifly_batch.test: token *** in the arguments" in text.replace("MainThread ", "")
    assert "ValueError: ***" in text and "WARNING" in text
    for handler in (own, above):  # what reached them before: WARNING and up, once each
        assert [r.getMessage() for r in handler.records] == ["a warning"]
    assert hifly_logger.handlers == [own] and hifly_logger.level == logging.WARNING
    assert hifly_logger.propagate


def test_a_log_that_cannot_be_written_is_said_once_and_the_run_goes_on(
    tmp_path: Path, hifly_logger: logging.Logger
) -> None:
    said = Collected()
    hifly_logger.handlers = [said]
    (tmp_path / "logs").write_text("a file where the folder goes")
    with run_log.recording(tmp_path, "camp") as path:
        logging.getLogger("hifly_batch.test").warning("the run goes on")
    assert path is None
    with run_log.recording(tmp_path / "other", "camp") as path:
        assert path is not None
        handler = next(h for h in hifly_logger.handlers if isinstance(h, run_log.RunLogHandler))
        handler.stream.close()  # as a disk that fails under the run
        for n in range(3):
            logging.getLogger("hifly_batch.test").warning("record %d", n)
    messages = [r.getMessage() for r in said.records]
    cannot = [m for m in messages if "the run log cannot be written" in m]
    assert len(cannot) == 2 and cannot[0].endswith(
        "logs: the run log cannot be written (File exists); the run goes on without it"
    )
    assert [m for m in messages if m.startswith("record ")] == ["record 0", "record 1", "record 2"]
    assert "the run goes on" in messages


def test_logs_sort_by_their_time_and_the_oldest_go(tmp_path: Path) -> None:
    names = ["c-20240102T000000Z-2.log", "c-20240102T000000Z.log", "c-20240101T235959Z.log",
             "c-x-20240101T000000Z.log", "c-20240101T000000Z.txt"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("")
    assert [p.name for p in run_log.campaign_logs(tmp_path, "c")] == [
        "c-20240101T235959Z.log",
        "c-20240102T000000Z.log",
        "c-20240102T000000Z-2.log",
    ]
    run_log.prune(tmp_path, "c", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["c-20240102T000000Z-2.log", "c-x-20240101T000000Z.log", "c-20240101T000000Z.txt"]
    )
