"""``hifly-batch run`` end to end: the real CLI in a subprocess against the sandbox."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from hifly_batch.api.transport import RetryPolicy
from hifly_batch.runner.scheduler import CREATE_GRACE
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import RequestKind
from hifly_batch.sandbox.routes import classify
from hifly_batch.sandbox.server import Handler
from tests.campaigns import (
    Campaign,
    cli,
    creates,
    popen,
    read_state,
    report_rows,
    state_path,
)
from tests.conftest import SECRET_TOKEN, Store


def run(campaign: Campaign, sandbox: Sandbox, *extra: str):  # type: ignore[no-untyped-def]
    return cli("run", "--no-progress", str(campaign.manifest), *extra, sandbox=sandbox)


def statuses(campaign: Campaign) -> Counter[str]:
    return Counter(row["status"] for row in report_rows(campaign))


def test_personalized_campaign_completes_with_the_sandbox_bytes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=100, concurrency=8).write()
    result = run(campaign, sandbox)
    assert result.code == 0, result.stderr
    rows = report_rows(campaign)
    assert statuses(campaign) == {"done": 104}  # 2 uploads, avatar, voice, 100 videos
    videos = [r for r in rows if r["section"] == "videos"]
    assert sorted(r["key"] for r in videos) == [f"c{n:04d}" for n in range(1, 101)]
    for row in videos:
        output = campaign.output_dir / row["output"]
        assert output.read_bytes() == sandbox.output_bytes(row["task_id"]), row["item"]
    assert creates(sandbox)["video/create_by_tts"] == 100


def test_rerun_makes_nothing_and_new_rows_make_exactly_theirs(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=20).write()
    assert run(campaign, sandbox).code == 0
    before = creates(sandbox)
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox) == before
    campaign.rows = 30
    campaign.write()
    assert run(campaign, sandbox).code == 0
    after = creates(sandbox)
    assert after["video/create_by_tts"] - before["video/create_by_tts"] == 10
    assert {k: v for k, v in after.items() if k != "video/create_by_tts"} == {
        k: v for k, v in before.items() if k != "video/create_by_tts"
    }


def test_editing_the_template_recreates_exactly_its_items(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    other = """\
  farewell:
    for_each: customers
    avatar: founder
    voice: founder_voice
    text: "再见，{{ row.name }}。期待下次与您见面，祝您生活愉快。"
    output: "farewell/{{ key }}.mp4"
"""
    campaign = Campaign(tmp_path / "c", rows=6, extra_yaml=other).write()
    assert run(campaign, sandbox).code == 0
    before = creates(sandbox)
    campaign.template = "{{ row.name }}，新年快乐！这是一段新的问候语，感谢您一直以来的支持。"
    campaign.write()
    plan = cli("plan", "--all", str(campaign.manifest), sandbox=sandbox).stdout
    recreated = [line for line in plan.splitlines() if line.startswith("  recreate")]
    assert len(recreated) == 6 and all("text changed" in line for line in recreated)
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox)["video/create_by_tts"] - before["video/create_by_tts"] == 6
    rows = {r["item"]: r for r in report_rows(campaign)}
    assert all(rows[f"videos.farewell[c{n:04d}]"]["attempts"] == "1" for n in range(1, 7))


def test_changing_only_the_rate_edits_the_voice_and_recreates_its_speakers(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=4).write()
    assert run(campaign, sandbox).code == 0
    before, edits = creates(sandbox), sandbox.counters().requests.get("voice/edit", 0)
    campaign.rate = "1.2"
    campaign.write()
    plan = cli("plan", str(campaign.manifest), sandbox=sandbox).stdout.splitlines()
    listed = [line.split()[:2] for line in plan[1:6]]
    assert listed[0] == ["edit", "voices.founder_voice"]
    assert all(action == "recreate" for action, _ in listed[1:5])
    assert "rate 1.0 → 1.2" in plan[1]
    assert run(campaign, sandbox).code == 0
    after = creates(sandbox)
    assert after["voice/create"] == before["voice/create"]
    assert sandbox.counters().requests["voice/edit"] == edits + 1
    assert after["video/create_by_tts"] - before["video/create_by_tts"] == 4


def test_failed_tasks_block_their_users_and_the_rerun_retries_only_them(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=5).write()
    sandbox.set_faults(Faults(task_fail=1.0))
    result = run(campaign, sandbox)
    assert result.code == 1
    assert statuses(campaign) == {"done": 2, "failed": 2, "blocked": 5}
    sandbox.set_faults(Faults())
    before = creates(sandbox)
    assert run(campaign, sandbox).code == 0
    after = creates(sandbox)
    assert after["avatar/create_by_video"] - before["avatar/create_by_video"] == 1
    assert after["voice/create"] - before["voice/create"] == 1
    assert after["video/create_by_tts"] == 5 and statuses(campaign) == {"done": 9}


def test_some_failed_videos_are_retried_alone(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=30).write()
    assert run(campaign, sandbox).code == 0  # clones done, nothing to fail there
    campaign.template = "第二版：{{ row.name }}您好，欢迎再次光临我们的门店，祝您购物愉快。"
    campaign.write()
    sandbox.set_faults(Faults(task_fail=0.3, seed=11))
    assert run(campaign, sandbox).code == 1
    failed = {r["item"] for r in report_rows(campaign) if r["status"] == "failed"}
    assert 0 < len(failed) < 30
    sandbox.set_faults(Faults())
    campaign.rows = 33  # new rows: a plain run would make them, --retry-failed leaves them
    campaign.write()
    before = creates(sandbox)["video/create_by_tts"]
    assert run(campaign, sandbox, "--retry-failed").code == 0
    assert creates(sandbox)["video/create_by_tts"] - before == len(failed)
    rows = {r["item"]: r["status"] for r in report_rows(campaign)}
    assert all(rows[item] == "done" for item in failed)
    new = [f"videos.welcome[c00{n}]" for n in (31, 32, 33)]
    assert all(rows.get(item) != "done" for item in new), rows
    assert not any(r.item in new for r in read_state(campaign).values() if r.task_id)
    assert run(campaign, sandbox).code == 0
    assert creates(sandbox)["video/create_by_tts"] - before == len(failed) + 3
    assert statuses(campaign) == {"done": 37}


def test_back_pressure_never_fails_an_item(tmp_path: Path) -> None:
    config = SandboxConfig(task_seconds=0.2, task_jitter=0.1, max_generating=3, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=24, concurrency=8).write()
        result = run(campaign, sandbox)
        assert result.code == 0, result.stderr
        assert statuses(campaign) == {"done": 28}
        assert creates(sandbox)["video/create_by_tts"] == 24


def test_credits_running_out_drains_then_the_rerun_completes(tmp_path: Path) -> None:
    config = SandboxConfig(
        task_seconds=0.3, task_jitter=0.0, credits=50, credit_cost=10, token=SECRET_TOKEN
    )
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=12, concurrency=3).write()
        result = run(campaign, sandbox)
        assert result.code == 1 and "1002" in result.stderr
        rows = report_rows(campaign)
        done = [r for r in rows if r["section"] == "videos" and r["status"] == "done"]
        assert len(done) == 5 and all((campaign.output_dir / r["output"]).exists() for r in done)
        assert Counter(r["status"] for r in rows if r["section"] == "videos")["pending"] == 7
        sandbox.set_credits(1000)
        assert run(campaign, sandbox).code == 0
        assert creates(sandbox)["video/create_by_tts"] == 12


class HeldDownloads:
    """Holds every download the sandbox is asked for until :meth:`release` (at most
    ``HOLD`` seconds, under the client's read timeout): a run that reached its downloads
    keeps going, holding its locks, for as long as a test needs."""

    HOLD = 25.0

    def __init__(self, sandbox: Sandbox) -> None:
        server = sandbox._server
        assert server is not None
        self._inner: Callable[[Handler], None] = server.dispatch
        server.dispatch = self._dispatch  # type: ignore[method-assign]
        self.asked = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def _dispatch(self, http: Handler) -> None:
        if classify(http.path.split("?", 1)[0]).kind is RequestKind.DOWNLOAD:
            self.asked.set()
            self._released.wait(timeout=self.HOLD)
        self._inner(http)


def test_a_second_run_on_the_same_state_is_refused(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    # Another machine's checkout of the campaign: its own folder, the same database.
    elsewhere = Campaign(tmp_path / "elsewhere", rows=3).write()
    held = HeldDownloads(sandbox)
    first = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
    try:
        _wait_for(held.asked.is_set, timeout=60)  # it made everything and holds its locks
        again = [popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)]
        if store.in_database:
            again.append(popen("run", "--no-progress", str(elsewhere.manifest), sandbox=sandbox))
        refused = [proc.communicate(timeout=60)[1] for proc in again]
        assert first.poll() is None, "the first run ended before the others were refused"
        assert [proc.returncode for proc in again] == [3] * len(again), refused
        if store.in_database:
            # The same folder, or another on the same database: the database's lock of
            # the campaign refuses it, naming the holder.
            for said in refused:
                assert "another hifly-batch run of campaign 'campaign' is using this" in said
                assert f"(host {socket.gethostname()}, pid {first.pid}, since " in said
            assert not elsewhere.output_dir.exists()  # it began nothing
        else:
            assert "another hifly-batch run is using this state file" in refused[0]
            assert str(state_path(campaign)) in refused[0]
    finally:
        held.release()
        assert first.wait(timeout=60) == 0
    assert statuses(campaign) == {"done": 7}
    made = creates(sandbox)
    assert made == {"avatar/create_by_video": 1, "voice/create": 1, "video/create_by_tts": 3}
    if store.in_database:  # the other checkout finds the work in the database
        assert run(elsewhere, sandbox).code == 0
        assert creates(sandbox) == made and statuses(elsewhere) == {"done": 7}


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["Ctrl-C", "SIGTERM"],
)
def test_ctrl_c_or_sigterm_saves_state_and_the_rerun_resumes(
    tmp_path: Path, stop: signal.Signals, code: int, said: str, store: Store
) -> None:
    config = SandboxConfig(task_seconds=1.5, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=6).write()
        proc = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        _wait_for(lambda: creates(sandbox).get("video/create_by_tts"))
        proc.send_signal(stop)
        signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == code, stderr
        # Nothing it waits for: answers already taken are never waited for again.
        assert time.monotonic() - signalled < CREATE_GRACE / 2
        assert f"hifly-batch: {said}; progress is saved, run again to resume" in stderr
        assert "Traceback" not in stderr
        assert (campaign.output_dir / "report.csv").is_file()  # the reports were written
        lock = (campaign.root / "campaign.sandbox.lock").read_text("utf-8")
        assert "video_by_tts" in lock  # and the record of what was sent
        assert statuses(campaign)["done"] < 10
        made = creates(sandbox)
        assert run(campaign, sandbox).code == 0
        resumed = creates(sandbox)
        assert resumed["avatar/create_by_video"] == made["avatar/create_by_video"] == 1
        assert resumed["video/create_by_tts"] == 6


def test_a_run_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path: Path) -> None:
    """As under nohup, or `&` in a script: SIGINT is ignored, SIGTERM still stops it."""
    config = SandboxConfig(task_seconds=0.5, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=2).write()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIFLY_")}
        env["HIFLY_BASE_URL"], env["HIFLY_TOKEN"] = sandbox.base_url, sandbox.token
        ignoring = (
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "os.execv(sys.executable, [sys.executable, '-m', 'hifly_batch', *sys.argv[1:]])"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", ignoring, "run", "--no-progress", str(campaign.manifest)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        _wait_for(lambda: creates(sandbox).get("video/create_by_tts"))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert statuses(campaign) == {"done": 6}


def test_lost_create_answers_are_uncertain_until_resubmitted(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=8).write()
    sandbox.set_faults(Faults(drop_after_create=0.5, seed=3))
    result = run(campaign, sandbox)
    assert result.code == 1
    uncertain = statuses(campaign)["uncertain"]
    assert uncertain > 0
    sandbox.set_faults(Faults())
    before = creates(sandbox)
    assert run(campaign, sandbox).code == 1
    assert statuses(campaign)["uncertain"] == uncertain
    again = creates(sandbox)
    assert sum(again.values()) - sum(before.values()) <= statuses(campaign)["done"]
    assert run(campaign, sandbox, "--resubmit-uncertain").code == 0
    assert statuses(campaign) == {"done": 12}


def test_dry_run_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=3).write()
    result = run(campaign, sandbox, "--dry-run")
    assert result.code == 0 and "create" in result.stdout
    assert sum(sandbox.counters().requests.values()) == 0


def test_only_runs_matching_items_and_what_they_need(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=5).write()
    result = run(campaign, sandbox, "--only", "videos.welcome[c0002]")
    assert result.code == 0, result.stderr
    assert statuses(campaign) == {"done": 5, "skipped": 4}
    assert creates(sandbox)["video/create_by_tts"] == 1
    nothing = run(campaign, sandbox, "--only", "videos.nope*")
    assert nothing.code == 2 and "no item id matches" in nothing.stderr


def test_deleted_output_is_downloaded_again(sandbox: Sandbox, tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    gone = campaign.output_dir / "videos" / "welcome" / "c0001.mp4"
    original = gone.read_bytes()
    gone.unlink()
    before = creates(sandbox)
    assert run(campaign, sandbox).code == 0
    assert gone.read_bytes() == original and creates(sandbox) == before


def test_an_output_the_service_no_longer_has_fails_on_every_run_saying_what_to_do(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The file is gone here and the task is unknown to the service now: the item fails
    on every rerun, never read back as done from the lock file, and says how to make it
    again; nothing is created until asked."""
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    gone = campaign.output_dir / "videos" / "welcome" / "c0001.mp4"
    gone.unlink()
    config = SandboxConfig(task_seconds=0.05, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "another world", config) as forgot:  # its tasks are unknown here
        for _ in range(3):
            result = run(campaign, forgot)
            assert result.code == 1, result.stderr
            rows = {r["item"]: r for r in report_rows(campaign)}
            row = rows["videos.welcome[c0001]"]
            assert row["status"] == "failed", row
            assert "run --recreate 'videos.welcome[c0001]'" in row["error_message"]
            assert not gone.exists() and creates(forgot) == {}
        shown = cli("status", str(campaign.manifest), sandbox=forgot).stdout
        assert re.search(r"videos\.welcome\[c0001\]\s+failed", shown), shown


def test_status_json_and_report_rewrite(sandbox: Sandbox, tmp_path: Path, store: Store) -> None:
    import json

    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign, sandbox).code == 0
    status = cli("status", "--json", str(campaign.manifest))
    assert status.code == 0, status.stderr
    assert {item["status"] for item in json.loads(status.stdout)} == {"done"}
    target = tmp_path / "again.csv"
    assert cli("report", str(campaign.manifest), "-o", str(target)).code == 0
    assert target.read_bytes() == (campaign.output_dir / "report.csv").read_bytes()


def test_no_token_is_exit_3(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    result = cli("run", str(campaign.manifest))
    assert result.code == 3 and "HIFLY_TOKEN" in result.stderr


def _wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_rehearsal_keeps_its_own_state(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert cli("run", "--sandbox", "--no-progress", str(campaign.manifest)).code == 0
    rehearsed = cli("plan", "--all", "--sandbox", str(campaign.manifest)).stdout
    real = cli("plan", "--all", str(campaign.manifest)).stdout

    def actions(plan: str) -> list[str]:
        return [line.split()[0] for line in plan.splitlines() if line.startswith("  ")]

    assert actions(rehearsed) == ["skip"] * 6 and actions(real) == ["create"] * 6


def test_a_state_file_serves_one_api(tmp_path: Path) -> None:
    from hifly_batch.runner.state import StateError
    from hifly_batch.runner.state_file import FileState

    with FileState(tmp_path / "s.db") as store:
        store.claim("sandbox")
        store.claim("sandbox")
        with pytest.raises(StateError, match="records work made on the sandbox"):
            store.claim("service")


def test_a_timed_out_task_is_checked_on_rerun_not_paid_again(tmp_path: Path, store: Store) -> None:
    config = SandboxConfig(task_seconds=1.5, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=3, task_timeout="0.3s").write()
        result = run(campaign, sandbox)
        assert result.code == 1
        rows = report_rows(campaign)
        assert all("timed out" in r["error_message"] for r in rows if r["status"] == "failed")
        made = creates(sandbox)
        time.sleep(1.6)  # the tasks finish remotely meanwhile
        campaign.task_timeout = "2h"
        campaign.write()
        assert run(campaign, sandbox).code == 0
        # The clones that timed out were fetched, not made again; the videos they
        # blocked were made once.
        after = creates(sandbox)
        assert after["avatar/create_by_video"] == made["avatar/create_by_video"] == 1
        assert after["voice/create"] == made["voice/create"] == 1
        assert after["video/create_by_tts"] == 3 and statuses(campaign) == {"done": 7}


def test_slow_answers_grow_the_worker_pool(sandbox: Sandbox, tmp_path: Path) -> None:
    # (That quick answers share one thread is test_workers.py's, on a fake clock: on a
    # busy machine any answer can be slow.)
    sandbox.set_faults(Faults(slow=1.0, slow_seconds=0.2))
    slow = Campaign(tmp_path / "slow", rows=6, concurrency=6).write()
    result = run(slow, sandbox, "-v")
    sandbox.set_faults(Faults())
    assert result.code == 0, result.stderr
    grown = [int(n) for n in re.findall(r"(\d+) HTTP workers in all", result.stderr)]
    assert grown and max(grown) > 1
    assert max(grown) <= 6 + 4  # concurrency + 4 at most
    assert statuses(slow) == {"done": 10}


def test_a_second_ctrl_c_still_records_the_creates_already_answered(tmp_path: Path) -> None:
    config = SandboxConfig(task_seconds=0.2, task_jitter=0.0, token=SECRET_TOKEN)
    with Sandbox(tmp_path / "w", config) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=1).write()
        assert run(campaign, sandbox).code == 0
        campaign.rows = 3
        campaign.write()
        sandbox.set_faults(Faults(slow=1.0, slow_seconds=3.0, seed=1))  # answers take 3 s
        proc = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        _wait_for(lambda: creates(sandbox).get("video/create_by_tts", 0) >= 3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # impatient: the answers are still on their way
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        sandbox.set_faults(Faults())
    records = read_state(campaign)
    new = [records[f"videos.welcome[c000{n}]"] for n in (2, 3)]
    assert [r.status.value for r in new] == ["running", "running"], new
    assert all(r.task_id for r in new)


ASKED: list[str] = []


@pytest.fixture
def not_the_api() -> Iterator[str]:
    """A web server that is not the API: 404 on /api/..., a 308 redirect on /moved/...
    It counts the requests it was sent in ``ASKED``."""
    ASKED.clear()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ASKED.append(self.path)
            if self.path.startswith("/moved"):
                self.send_response(308)
                self.send_header("Location", "https://example.invalid/login?next=secret")
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("closed port", "cannot reach the HiFly API at http://127.0.0.1:9"),
        ("not the API", "does not answer as the HiFly API: account/credit: HTTP 404"),
        ("redirect", "HTTP 308 from {url}/moved (redirected to https://example.invalid/login?…)"),
    ],
)
def test_a_base_url_that_is_not_the_api_is_a_configuration_error(
    tmp_path: Path, not_the_api: str, where: str, said: str
) -> None:
    campaign = Campaign(tmp_path / "c", rows=1).write()
    url = {"closed port": "http://127.0.0.1:9", "not the API": not_the_api,
           "redirect": not_the_api + "/moved"}[where]  # fmt: skip
    result = cli("run", "--no-progress", "--base-url", url, str(campaign.manifest),
                 sandbox=SimpleNamespace(base_url=url, token=SECRET_TOKEN))  # type: ignore[arg-type]  # fmt: skip
    assert result.code == 3, result.stderr
    assert said.format(url=not_the_api) in result.stderr, result.stderr
    assert "secret" not in result.stderr  # a redirect's query is not shown
    assert len(ASKED) <= 1  # an answer that is not the API's is not asked again
    assert not (campaign.root / ".hifly" / "campaign.state.db").exists()  # nothing began


def test_rate_limiting_is_waited_out_and_never_fails_an_item(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=8).write()
    sandbox.set_faults(Faults(http_429=0.3, retry_after_seconds=0.5, http_500=0.1, seed=5))
    result = run(campaign, sandbox)
    assert result.code == 0, result.stderr
    assert statuses(campaign) == {"done": 12}
    faults = sandbox.counters().faults
    assert faults["http_429"] >= 3 and faults["http_500"] >= 1, faults
    made = creates(sandbox)
    assert made["video/create_by_tts"] == 8 and made["avatar/create_by_video"] == 1


def test_a_gateway_that_lost_a_create_answer_makes_it_uncertain_never_sent_twice(
    sandbox: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=6).write()
    sandbox.set_faults(Faults(gateway_after_create=0.4, seed=2))
    result = run(campaign, sandbox)
    assert result.code == 1, result.stderr
    uncertain = [r for r in read_state(campaign).values() if r.status.value == "uncertain"]
    gateway = sandbox.counters().faults["gateway_after_create"]
    assert uncertain and len(uncertain) == gateway  # each lost answer: one uncertain item
    sandbox.set_faults(Faults())
    assert run(campaign, sandbox).code == 1  # a plain rerun sends none of them again
    still = {r.item for r in read_state(campaign).values() if r.status.value == "uncertain"}
    assert still == {r.item for r in uncertain}
    assert run(campaign, sandbox, "--resubmit-uncertain").code == 0


def test_an_upload_the_storage_always_refuses_fails_its_asset_not_the_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3, max_attempts=1).write()
    sandbox.set_faults(Faults(put_fail=1.0))  # every PUT answered 500, nothing stored
    result = run(campaign, sandbox)
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert f"report: {campaign.output_dir / 'report.csv'}" in result.stdout
    rows = {row["item"]: row for row in report_rows(campaign)}
    for item, name in (
        ("assets.founder_clip", "founder.mp4"),
        ("assets.voice_sample", "voice.wav"),
    ):
        assert rows[item]["status"] == "failed", rows[item]
        assert f"upload of {name}: HTTP 500" in rows[item]["error_message"], rows[item]
    blocked = {"avatars.founder", "voices.founder_voice"} | {
        f"videos.welcome[c000{n}]" for n in (1, 2, 3)
    }
    assert {item for item, row in rows.items() if row["status"] == "blocked"} == blocked
    assert creates(sandbox) == {}  # nothing was cloned from a file that never arrived
    # Each PUT was tried again after a backoff, as often as the retry policy allows.
    puts = sandbox.counters().requests["upload"]
    assert puts == 2 * RetryPolicy().attempts and puts > 2
    assert sandbox.counters().faults["put_fail"] == puts

    sandbox.set_faults(Faults())
    result = run(campaign, sandbox)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert statuses(campaign) == {"done": 7}
    assert {r.status.value for r in read_state(campaign).values()} == {"done"}
    assert creates(sandbox) == {
        "avatar/create_by_video": 1,
        "voice/create": 1,
        "video/create_by_tts": 3,
    }
