"""A campaign whose state is in PostgreSQL, through the real CLI on the sandbox: a run,
a rerun that makes nothing, and the commands that read the state from it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_postgres import PostgresState
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from tests.campaigns import Campaign, cli, creates, report_rows
from tests.conftest import SECRET_TOKEN
from tests.pg import PgServer
from tests.test_examples import copy_repo_campaigns


def test_a_run_keeps_its_state_in_the_database_and_a_rerun_makes_nothing(
    tmp_path: Path, pg_url: str, sandbox: Sandbox
) -> None:
    manifest = copy_repo_campaigns(tmp_path) / "quickstart.yaml"
    first = cli("run", "--no-progress", "--state", pg_url, str(manifest), sandbox=sandbox)
    assert first.code == 0, first.stderr
    assert not list((manifest.parent / ".hifly").glob("*.state.db"))
    plan = cli("plan", "--json", "--state", pg_url, str(manifest))
    assert plan.code == 0, plan.stderr
    assert '"create"' not in plan.stdout and '"skip"' in plan.stdout
    status = cli("status", "--state", pg_url, str(manifest))
    assert status.code == 0 and "done" in status.stdout, status.stdout + status.stderr
    made = creates(sandbox)
    again = cli("run", "--no-progress", "--state", pg_url, str(manifest), sandbox=sandbox)
    assert again.code == 0, again.stderr
    assert creates(sandbox) == made
    assert pg_url.split("?")[0] not in first.stderr + again.stderr + status.stdout


def test_in_process_rehearsals_keep_their_state_beside_their_world(
    tmp_path: Path, pg_url: str
) -> None:
    """``--sandbox`` makes a sandbox world in each folder: two folders' rehearsals with one
    database must not read each other's records, which name tasks of another world."""
    for folder in ("one", "two"):
        manifest = copy_repo_campaigns(tmp_path / folder) / "quickstart.yaml"
        ran = cli("run", "--sandbox", "--no-progress", "--state", pg_url, str(manifest))
        assert ran.code == 0, ran.stderr
        assert (manifest.parent / ".hifly" / "quickstart.sandbox.state.db").exists()
    with PostgresState(pg_url, "quickstart", "sandbox", readonly=True) as store:
        assert store.records() == {}


# Teams: two machines, and a database that goes away mid-run ------------------------


def _wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _run(campaign: Campaign, url: str, sandbox: Sandbox, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HIFLY_")}
    environ.update(HIFLY_BASE_URL=sandbox.base_url, HIFLY_TOKEN=sandbox.token, **env)
    return subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", "run", "--no-progress", "--state", url,
         str(campaign.manifest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )  # fmt: skip


@contextlib.contextmanager
def _paused(proc: subprocess.Popen[str]) -> Iterator[None]:
    """``proc`` stopped (SIGSTOP) for the body: its connections stay open, and it does
    nothing, however slow this machine is."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


def _records(url: str) -> dict[str, Record]:
    with PostgresState(url, "campaign", "sandbox", readonly=True) as store:
        return store.records()


def _each_made_once(sandbox: Sandbox, rows: int) -> None:
    assert creates(sandbox) == {
        "avatar/create_by_video": 1, "voice/create": 1, "video/create_by_tts": rows,
    }  # fmt: skip


def test_a_second_machine_is_refused_while_the_first_runs_then_makes_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    config = SandboxConfig(task_seconds=2.0, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        first = Campaign(tmp_path / "one", rows=3).write()
        second = Campaign(tmp_path / "two", rows=3).write()  # a clone on another machine
        running = _run(first, pg_url, sandbox)
        _wait_for(lambda: creates(sandbox).get("video/create_by_tts"))
        with _paused(running):  # (mid-run however slowly the second starts)
            refused = cli("run", "--no-progress", "--state", pg_url, str(second.manifest),
                          sandbox=sandbox)  # fmt: skip
        _, stderr = running.communicate(timeout=120)
        assert running.returncode == 0, stderr
        assert refused.code == 3, refused.stderr
        assert f"host {socket.gethostname()}, pid {running.pid}, since " in refused.stderr
        assert "another hifly-batch run of campaign 'campaign'" in refused.stderr
        assert not second.output_dir.exists()  # it wrote nothing, here or there
        records = _records(pg_url)
        assert {r.status for r in records.values()} == {Status.DONE} and len(records) == 7
        made = creates(sandbox)
        again = cli("run", "--no-progress", "--state", pg_url, str(second.manifest),
                    sandbox=sandbox)  # fmt: skip
        assert again.code == 0, again.stderr
        assert creates(sandbox) == made
        for record in records.values():  # its outputs are the first machine's tasks'
            if record.section == "videos":
                assert record.output is not None and record.task_id is not None
                saved = (second.output_dir / record.output).read_bytes()
                assert saved == sandbox.output_bytes(record.task_id)


def test_a_database_restarted_mid_run_is_waited_for_and_nothing_is_made_twice(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    config = SandboxConfig(task_seconds=1.5, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=6).write()
        running = _run(campaign, pg_url, sandbox)
        _wait_for(lambda: creates(sandbox).get("video/create_by_tts"))
        with _paused(running):  # (so that the run meets the outage however slow the stop)
            pg_server.stop()
        time.sleep(2.0)
        pg_server.start()
        _, stderr = running.communicate(timeout=120)
        assert running.returncode == 0, stderr
        assert "the state database was lost" in stderr and "reconnected" in stderr
        assert {r.status for r in _records(pg_url).values()} == {Status.DONE}
        _each_made_once(sandbox, 6)


def test_a_database_gone_past_the_wait_stops_the_run_and_the_rerun_completes(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    """Creates answered while the database is gone are kept in the journal: the rerun
    writes their task ids back and waits for those tasks, never sending them again."""
    slow = Faults(slow=1.0, slow_seconds=3.0)  # every answer takes 3 s
    config = SandboxConfig(task_seconds=0.5, task_jitter=0.0, token=SECRET_TOKEN, faults=slow)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=3).write()
        running = _run(campaign, pg_url, sandbox, HIFLY_STATE_RETRY_SECONDS="1")
        sent = lambda: any(r.status is Status.SUBMITTING for r in _records(pg_url).values())  # noqa: E731
        _wait_for(sent)  # a create is on its way, its answer 3 s off
        with _paused(running):
            pg_server.stop()
        _, stderr = running.communicate(timeout=120)
        assert running.returncode == 3, stderr
        assert "Traceback" not in stderr
        journal = campaign.root / ".hifly" / "campaign.sandbox.journal"
        assert "the state database was lost" in stderr and str(journal) in stderr
        assert journal.exists()
        report = {row["item"]: row for row in report_rows(campaign)}  # how far it got
        assert len(report) == 7 and report["avatars.founder"]["task_id"]  # from the journal
        pg_server.start()
        sandbox.set_faults(Faults())
        again = cli("run", "--no-progress", "--state", pg_url, str(campaign.manifest),
                    sandbox=sandbox)  # fmt: skip
        assert again.code == 0, again.stderr
        assert not journal.exists()
        assert {r.status for r in _records(pg_url).values()} == {Status.DONE}
        _each_made_once(sandbox, 3)


def test_without_sandbox_the_real_runs_records_are_read_or_else_the_rehearsals(
    sandbox: Sandbox, tmp_path: Path, pg_url: str
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    ran = cli("run", "--no-progress", "--state", pg_url, str(campaign.manifest), sandbox=sandbox)
    assert ran.code == 0, ran.stderr  # a sandbox by its answers: its records are a rehearsal's

    def statuses(*options: str) -> dict[str, str]:
        shown = cli("status", "--json", "--state", pg_url, *options, str(campaign.manifest))
        assert shown.code == 0, shown.stderr
        return {row["item"]: row["status"] for row in json.loads(shown.stdout)}

    assert set(statuses().values()) == {"done"} and len(statuses()) == 6
    with PostgresState(pg_url, "campaign", "service") as real:  # then a real run began
        real.claim("service", "campaign")
        real.put(Record("assets.founder_clip", "assets", "upload", status=Status.FAILED))
    assert statuses()["assets.founder_clip"] == "failed"
    assert statuses("--sandbox")["assets.founder_clip"] == "done"
