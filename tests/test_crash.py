"""Crash torture: ``kill -9`` the real CLI at random moments, resume, and lose nothing.

The sandbox runs in this process, so the test can fire a SIGKILL at the
child the instant the sandbox has answered (or is about to answer) a create
request or a download: those kills land in the at-most-once window (create
answered, task id not yet committed) and in the middle of a download (temporary
file written, synced, renamed, then the state write). Timer kills land
anywhere else: start-up, planning, polling, report writing. A watcher kills
some runs the instant their lock file's temporary copy appears, while the
lock file is being written.

The torture runs twice: once on a sound service, and once with one API request
in ten (creates among them) answered HTTP 500, which the runner retries after a
backoff with the item pending. After every kill, the items it left uncertain
(``submitting`` in the state) are matched to the creates that were on the wire
when it struck, as the sandbox saw them arrive and be answered: never more
uncertain items than creates on the wire, each with its own create, so that a
kill during a backoff leaves nothing uncertain (SPEC §5).

The lock file (``campaign.sandbox.lock`` beside the manifest, SPEC §5) is read
after every process: it must parse, never lose an item or a finished task it
once recorded, and, after a run that finished, hold everything the state has
made. Once during the torture and once at the end the local state (``.hifly/``)
is deleted, as on a new machine: the lock file alone must then carry the
campaign, and at the end nothing at all is created or uploaded again.

A third torture keeps the state in PostgreSQL (``HIFLY_STATE``): there losing the
local state also deletes the campaign's rows in the database, and after every kill
the campaign's lock in the database must be free again, the killed run's session
having ended with it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hifly_batch.core.lifecycle import Status
from hifly_batch.reports.csv_report import COLUMNS
from hifly_batch.runner import lockfile
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_postgres import DatabaseLocked, PostgresState
from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig
from hifly_batch.sandbox.faults import RequestKind
from hifly_batch.sandbox.routes import classify
from hifly_batch.sandbox.server import Handler
from tests.campaigns import (
    Campaign,
    cli,
    create_endpoint,
    creates,
    lose_state,
    output_files,
    popen,
    read_state,
    report_rows,
    temporary_files,
)
from tests.conftest import SECRET_TOKEN

SEED = 4_20_2024
KILLS = 36
ROWS = 60
# The torture with the state in PostgreSQL: fewer kills, a smaller campaign.
PG_KILLS = 24
PG_ROWS = 40
# A killed run's session ends with its process; the server may take a moment to notice.
LOCK_FREED_WITHIN = 10.0
# Long texts make outputs of about 100 kB, so downloads take long enough to be hit.
LONG_TEMPLATE = "{{ row.name }}您好，感谢您选择{{ vars.brand }}。" + "好" * 6000
CONFIG = SandboxConfig(task_seconds=0.05, task_jitter=0.1, token=SECRET_TOKEN)

# (phase, weight, delay range in seconds after the trigger)
PHASES: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("create received, before its answer", 0.15, (0.0, 0.0)),
    ("create answered, task id not yet recorded", 0.30, (0.0, 0.004)),
    ("download answered, file being written", 0.35, (0.0, 0.008)),
    ("timer", 0.20, (0.15, 1.5)),
    ("lock file being written", 0.07, (0.0, 0.0)),
)
LOCK_WRITE = PHASES[4][0]
# One API request in ten answered HTTP 500, creates included (the second torture).
CREATE_5XX = Faults(seed=SEED, http_500=0.10)
# How far a create's wire time is stretched on each side, for the client's own part of it:
# marking the item submitting and writing the request before the sandbox reads it, reading
# the answer and recording its task id after the sandbox has sent it. Far below the
# runner's retry delay (2 s), so an item waiting to be retried is never covered by it.
WIRE_GRACE = 0.1


@dataclass
class Wire:
    """One create request as the sandbox saw it: its title, when it arrived, when it was
    answered (None while it is being answered)."""

    title: str | None
    arrived: float
    answered: float | None = None

    def on_wire(self, moment: float, grace: float = 0.0) -> bool:
        """The create had arrived by ``moment`` and was not yet answered then."""
        return self.arrived <= moment + grace and (
            self.answered is None or self.answered >= moment - grace
        )


@dataclass
class _Armed:
    phase: str
    kind: RequestKind
    before_answer: bool
    delay: float
    proc: subprocess.Popen[str]


class KillSwitch:
    """Wraps the sandbox's request dispatch to SIGKILL a child at a chosen request."""

    def __init__(self, sandbox: Sandbox) -> None:
        server = sandbox._server
        assert server is not None
        self._inner: Callable[[Handler], None] = server.dispatch
        server.dispatch = self._dispatch  # type: ignore[method-assign]
        self._lock = threading.Lock()
        self._armed: _Armed | None = None
        self.wires: list[Wire] = []
        self.killed_at: dict[int, float] = {}  # pid: when the first SIGKILL was sent
        self.killed_wall: dict[int, float] = {}  # the same moment, by the wall clock

    def kill(self, proc: subprocess.Popen[str]) -> None:
        """SIGKILL ``proc``, noting when."""
        with self._lock:
            self.killed_at.setdefault(proc.pid, time.monotonic())
            self.killed_wall.setdefault(proc.pid, time.time())
        proc.kill()

    def arm(self, armed: _Armed) -> None:
        with self._lock:
            self._armed = armed

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def _take(self, kind: RequestKind, before_answer: bool) -> _Armed | None:
        with self._lock:
            armed = self._armed
            if armed is None or armed.kind is not kind or armed.before_answer != before_answer:
                return None
            self._armed = None
            return armed

    def _dispatch(self, http: Handler) -> None:
        kind = classify(http.path.split("?", 1)[0]).kind
        rfile = http.rfile  # the connection's stream: a create's body is read here first
        wire = self._arrived(http) if kind is RequestKind.CREATE else None
        armed = self._take(kind, before_answer=True)
        if armed is not None:
            self.kill(armed.proc)
        try:
            self._inner(http)
        finally:
            http.rfile = rfile  # the next request on this keep-alive connection
            if wire is not None:
                wire.answered = time.monotonic()
        armed = self._take(kind, before_answer=False)
        if armed is not None:
            time.sleep(armed.delay)
            self.kill(armed.proc)

    def _arrived(self, http: Handler) -> Wire:
        """Note a create's arrival and title; its body is read here and handed on as read
        (the dispatch puts the connection's own stream back after the answer)."""
        wire = Wire(None, time.monotonic())
        if "chunked" not in http.headers.get("Transfer-Encoding", "").lower():
            body = http.read_body(2 * 1024 * 1024)
            http.rfile = io.BytesIO(body)  # type: ignore[assignment]
            with contextlib.suppress(ValueError, AttributeError):
                wire.title = json.loads(body).get("title")
        with self._lock:
            self.wires.append(wire)
        return wire

    def wires_since(self, since: float) -> list[Wire]:
        with self._lock:
            return [w for w in self.wires if w.arrived >= since]


@dataclass(frozen=True)
class Before:
    """What the earlier processes left, for the checks after the next one."""

    partial_downloads: int
    lock_temporaries: frozenset[str]

    @classmethod
    def of(cls, campaign: Campaign) -> Before:
        return cls(_partial_downloads(campaign), lock_temporaries(campaign))


@dataclass
class Torture:
    """Bookkeeping across kills: what each kill hit and which creates may repeat."""

    campaign: Campaign
    sandbox: Sandbox
    phases: Counter[str] = field(default_factory=Counter)
    left_partial_download: int = 0
    left_submitting: int = 0
    left_file_unrecorded: int = 0
    finished_runs: int = 0
    # Episodes of uncertainty, as (epoch, item, attempts): the epoch counts the losses of
    # the local state, after which an item's attempts start again from the lock file's.
    ever_uncertain: set[tuple[int, str, int]] = field(default_factory=set)
    resubmittable: set[tuple[int, str, int]] = field(default_factory=set)
    epoch: int = 0
    # The lock file as last read, by item id: it never loses an item or a finished task.
    locked: dict[str, Record] = field(default_factory=dict)
    lock_checks: int = 0
    kills_with_lock: int = 0
    lock_temporaries_left: int = 0
    # What a loss of the local state gave up: items made (or maybe made) that the lock file
    # did not record, each of which may be created once more; tasks the lost state alone knew.
    relinquished: Counter[str] = field(default_factory=Counter)
    lost_tasks: dict[str, set[str]] = field(default_factory=dict)
    state_losses: list[str] = field(default_factory=list)
    # Per kill: the items it left uncertain against the creates on the wire when it struck.
    left_uncertain: int = 0
    creates_on_wire: int = 0  # within WIRE_GRACE of the kill
    creates_on_wire_strictly: int = 0  # arrived before the kill, answered after it
    kills_leaving_uncertain: int = 0
    largest_lag: float = 0.0  # of a create that left its item uncertain, from the kill
    killed_wall: float = 0.0
    creates_unsent: int = 0  # left submitting by a kill before their request was written
    # Called the moment a killed run has been reaped, before anything else looks at it.
    after_kill: Callable[[], None] | None = None
    runs: int = 0  # in all, once the torture is over
    seconds: float = 0.0

    @property
    def kills(self) -> int:
        return sum(self.phases.values())

    def records(self) -> dict[str, Record]:
        """What the next run goes by: the local state's records, else the lock file's."""
        return {**self.locked, **read_state(self.campaign)}

    def after_process(self, before: Before, *, finished: bool) -> dict[str, Record]:
        """Checks that must hold whenever no run is going: lock file, state, outputs, report.
        ``finished``: the process ran to its end (was not killed). Returns :meth:`records`."""
        local = read_state(self.campaign)  # opens read-only: the file is usable
        self.check_lock_file(local, before, finished=finished)
        records = {**self.locked, **local}
        submitting = [r for r in local.values() if r.status is Status.SUBMITTING]
        self.left_submitting += bool(submitting)
        self.ever_uncertain |= self._episodes(records)
        self.left_partial_download += _partial_downloads(self.campaign) > before.partial_downloads
        assert_outputs_whole(self.campaign, self.sandbox, records, self.lost_tasks)
        self.left_file_unrecorded += any(
            (r := records.get(f"videos.welcome[{p.stem}]")) is None or r.status is not Status.DONE
            for p in output_files(self.campaign)
            if p.parent.name == "welcome"
        )
        assert_report_readable(self.campaign)
        return records

    def check_lock_file(self, local: dict[str, Record], before: Before, *, finished: bool) -> None:
        """The lock file, if there is one, is whole: it parses, keeps every item and every
        finished task it ever recorded (a file cut at a line end would drop some), and after
        a run that finished holds what the state made. A finished run leaves no temporary
        copy, neither its own nor those of writes a kill cut short; kills that left one
        are counted."""
        path = lock_file(self.campaign)
        new_temporaries = lock_temporaries(self.campaign) - before.lock_temporaries
        if finished:
            left = lock_temporaries(self.campaign)
            assert not left, f"a finished run left {sorted(left)}"
        self.lock_temporaries_left += bool(new_temporaries)
        if not path.exists():
            assert not self.locked, f"{path.name} was there and is gone"
            return
        lines = lockfile.read(path, campaign="campaign")  # raises on a torn line
        self.lock_checks += 1
        locked = {r.item: r for r in lines}
        assert len(locked) == len(lines), "one item has two lines, yet nothing was merged"
        for item, was in self.locked.items():
            now = locked.get(item)
            assert now is not None, f"{path.name} lost its line for {item}"
            if was.status is Status.DONE:
                assert _made(now) == _made(was), f"{path.name} changed finished {item}"
        if finished:
            for record in local.values():
                status = Status.UNCERTAIN if record.status is Status.SUBMITTING else record.status
                if status is Status.UNCERTAIN or (
                    status in (Status.DONE, Status.RUNNING)
                    and (record.task_id or record.resource_id)
                ):
                    line = locked.get(record.item)
                    assert line is not None, f"{path.name} has no line for {record.item}"
                    assert _made(line) == (status, record.task_id, record.resource_id), (
                        record.item, _made(line), record.status, record.task_id
                    )  # fmt: skip
        self.locked = locked

    def check_kill(
        self, previous: dict[str, Record], wires: list[Wire], killed_at: float, phase: str
    ) -> None:
        """The items a kill left uncertain are at most the creates on the wire when it
        struck, each with a create of its own among them: an item waiting for a retry (or
        for anything else) is pending, never ``submitting``."""
        left = [
            r
            for r in read_state(self.campaign).values()
            if _left_uncertain(r, previous.get(r.item))
        ]
        on_wire = [w for w in wires if w.on_wire(killed_at, WIRE_GRACE)]
        self.left_uncertain += len(left)
        self.creates_on_wire += len(on_wire)
        self.creates_on_wire_strictly += sum(w.on_wire(killed_at) for w in wires)
        self.kills_leaving_uncertain += bool(left)
        unmatched = list(on_wire)
        unsent = 0
        for record in left:
            title = _title(record)
            mine = [w for w in unmatched if w.title == title]
            if not mine:
                # At-most-once marks the item before its request is written: a kill in
                # between leaves it uncertain with a create that never reached the sandbox.
                marked = self.killed_wall - (record.started_at or 0.0)
                sent = [(w.arrived - killed_at, w.answered and w.answered - killed_at)
                        for w in wires if w.title == title]  # fmt: skip
                assert record.status is Status.SUBMITTING and 0 <= marked <= WIRE_GRACE, (
                    f"a kill ({phase}) left {record.item} {record.status.value} with no create "
                    f"of it on the wire; its creates in that run (arrived, answered, from the "
                    f"kill): {sent}; marked {marked:.4f} s before the kill"
                )
                unsent += 1
                continue
            closest = min(mine, key=lambda w: _lag(w, killed_at))
            unmatched.remove(closest)
            self.largest_lag = max(self.largest_lag, _lag(closest, killed_at))
        self.creates_unsent += unsent
        assert len(left) <= len(on_wire) + unsent, (phase, [r.item for r in left], len(on_wire))

    def before_resubmit(self) -> None:
        """A ``--resubmit-uncertain`` run may create each uncertain item once more: those the
        state has, and after a loss of the state those the lock file has."""
        self.resubmittable |= self._episodes(self.records())

    def _episodes(self, records: dict[str, Record]) -> set[tuple[int, str, int]]:
        return {(self.epoch, r.item, r.attempts) for r in records.values() if _is_uncertain(r)}

    def unrecorded(self) -> list[Record]:
        """Items of the local state made, or maybe made (left ``submitting`` or uncertain),
        that the lock file does not record as done, running or uncertain.

        The lock file is written when a run ends (SPEC §5), and a SIGKILL ends none: what
        the runs killed since the last run that ended made, or began to make, only the
        local state knows. Were it lost, each such item would be pending again, and created
        once more; an item the lock file records must not be (an uncertain one only in a
        ``--resubmit-uncertain`` run, counted as any other resubmission).
        """
        held = (Status.DONE, Status.RUNNING, Status.UNCERTAIN)
        return [
            record
            for record in read_state(self.campaign).values()
            if _made_or_maybe(record)
            and ((line := self.locked.get(record.item)) is None or line.status not in held)
        ]

    def lose_state(self, when: str) -> int:
        """Delete ``.hifly/`` (and, with the state in a database, the campaign's rows there),
        as a new machine or an evicted CI cache has none; returns how many items the next run
        may create again (:meth:`unrecorded`)."""
        local = read_state(self.campaign)
        unrecorded = self.unrecorded()
        for record in local.values():  # their outputs stay until the item is made again
            line = self.locked.get(record.item)
            if record.task_id is not None and (line is None or line.task_id != record.task_id):
                self.lost_tasks.setdefault(record.item, set()).add(record.task_id)
        self.relinquished.update(r.item for r in unrecorded)
        made = sum(_made_or_maybe(r) for r in local.values())
        lose_state(self.campaign)  # .hifly/, and the campaign's rows in a database
        self.epoch += 1
        mid_create = sum(_is_uncertain(r) for r in unrecorded)
        self.state_losses.append(
            f"{when}: of the {made} items it had made (or begun to), "
            f"{made - len(unrecorded)} were in the lock file, {len(unrecorded)} in the lost "
            f"state alone ({mid_create} of them mid-create)"
        )
        return len(unrecorded)


def _left_uncertain(record: Record, before: Record | None) -> bool:
    """The record, read after a kill, was made uncertain by that run: left ``submitting``
    by it, or marked uncertain in it (what was uncertain or submitting before is not)."""
    if record.status is Status.SUBMITTING:
        return not (
            before is not None
            and before.status is Status.SUBMITTING
            and before.started_at == record.started_at
        )
    return record.status is Status.UNCERTAIN and (before is None or not _is_uncertain(before))


_TITLES = {"avatars": "创始人", "voices": "创始人声音"}


def _title(record: Record) -> str:
    """The title the campaign's create of an item sends (one per item)."""
    if record.section == "videos":
        return f"欢迎客户{int(record.key.removeprefix('c'))}"
    return _TITLES[record.section]


def _lag(wire: Wire, moment: float) -> float:
    """How far ``moment`` lies outside the wire's time (0 inside it)."""
    after = moment - wire.answered if wire.answered is not None else 0.0
    return max(0.0, after, wire.arrived - moment)


def _made_or_maybe(record: Record) -> bool:
    """A create of the item was answered, or may have been made."""
    return create_endpoint(record) is not None and (
        record.task_id is not None or _is_uncertain(record)
    )


def _made(record: Record) -> tuple[Status, str | None, str | None]:
    return record.status, record.task_id, record.resource_id


def lock_file(campaign: Campaign) -> Path:
    """Where runs against a sandbox keep the lock file: ``campaign.sandbox.lock``."""
    return lockfile.lock_path(campaign.manifest, sandbox=True)


def lock_temporaries(campaign: Campaign) -> frozenset[str]:
    """Temporary copies of the lock file (``.campaign.sandbox.lock.XXXX.tmp``) beside it."""
    prefix = f".{lock_file(campaign).name}."
    return frozenset(
        p.name for p in campaign.root.iterdir() if p.name.startswith(prefix) and p.suffix == ".tmp"
    )


def uploads(sandbox: Sandbox) -> dict[str, int]:
    """Upload URLs asked for and files sent, as the sandbox counted them."""
    requests = sandbox.counters().requests
    return {name: requests.get(name, 0) for name in ("tool/create_upload_url", "upload")}


def _partial_downloads(campaign: Campaign) -> int:
    return sum(p.suffix == ".part" for p in temporary_files(campaign))


def _is_uncertain(record: Record) -> bool:
    return record.status in (Status.SUBMITTING, Status.UNCERTAIN)


def assert_outputs_whole(
    campaign: Campaign,
    sandbox: Sandbox,
    records: dict[str, Record],
    lost_tasks: dict[str, set[str]] | None = None,
) -> None:
    """Every file at a final name is exactly the output of its item's task (or of a task
    only a lost state knew: the file stays until the item is made again)."""
    for path in output_files(campaign):
        relative = path.relative_to(campaign.output_dir).as_posix()
        if "/" not in relative:  # the report and its review page, written atomically
            continue
        assert relative.startswith("videos/welcome/") and path.suffix == ".mp4", relative
        item = f"videos.welcome[{path.stem}]"
        record = records.get(item)
        tasks = {record.task_id} if record is not None and record.task_id else set()
        tasks |= (lost_tasks or {}).get(item, set())
        assert tasks, f"{relative} exists but its item has no task id"
        data = path.read_bytes()
        assert any(data == _output(sandbox, t) for t in sorted(tasks)), (
            f"{relative} is not the whole output of a task of its item ({sorted(tasks)})"
        )


def _output(sandbox: Sandbox, task_id: str) -> bytes | None:
    """The output of a finished task; None while it has none."""
    try:
        return sandbox.output_bytes(task_id)
    except KeyError:
        return None


def assert_report_readable(campaign: Campaign) -> None:
    report = campaign.output_dir / "report.csv"
    if report.exists():
        with report.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == COLUMNS and all(len(r) == len(COLUMNS) for r in rows)


def one_killed_run(
    torture: Torture, switch: KillSwitch, rng: random.Random, resubmit: bool
) -> bool:
    """One run, killed at a moment of a phase drawn at random; True if it was killed."""
    phase, trigger, delays = _choose(rng)
    before = Before.of(torture.campaign)
    extra = ("--resubmit-uncertain",) if resubmit else ()
    if resubmit:
        torture.before_resubmit()
    previous = torture.records()
    since = time.monotonic()
    proc = popen("run", "--no-progress", str(torture.campaign.manifest), *extra,
                 sandbox=torture.sandbox)  # fmt: skip
    delay = rng.uniform(*delays)
    if trigger is not None:
        kind, before_answer = trigger
        switch.arm(_Armed(phase, kind, before_answer, delay, proc))
    watching = threading.Event()
    watcher = threading.Thread(
        target=_kill_on_lock_write, args=(torture.campaign, switch, proc, before, watching)
    )
    if phase == LOCK_WRITE:
        watching.set()
        watcher.start()
    timeout = delay if trigger is None and phase != LOCK_WRITE else 60.0
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        switch.kill(proc)
        _, stderr = proc.communicate()
        phase = phase if trigger is None and phase != LOCK_WRITE else "timer (trigger never came)"
    finally:
        switch.disarm()
        watching.clear()
        if watcher.is_alive():
            watcher.join()
    killed_at = switch.killed_at.pop(proc.pid, None)
    torture.killed_wall = switch.killed_wall.pop(proc.pid, 0.0)
    if proc.returncode == -9:
        if torture.after_kill is not None:
            torture.after_kill()
        torture.phases[phase] += 1
        torture.kills_with_lock += lock_file(torture.campaign).exists()
        assert killed_at is not None
        torture.check_kill(previous, switch.wires_since(since), killed_at, phase)
    else:
        torture.finished_runs += 1
        assert proc.returncode in (0, 1), stderr
        assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    torture.after_process(before, finished=proc.returncode != -9)
    return proc.returncode == -9


def _kill_on_lock_write(
    campaign: Campaign,
    switch: KillSwitch,
    proc: subprocess.Popen[str],
    before: Before,
    watching: threading.Event,
) -> None:
    """Kill ``proc`` as soon as a new temporary copy of the lock file appears."""
    while watching.is_set():
        if lock_temporaries(campaign) - before.lock_temporaries:
            switch.kill(proc)
            return
        time.sleep(0.0002)


def _choose(rng: random.Random) -> tuple[str, tuple[RequestKind, bool] | None, tuple[float, float]]:
    names = [p[0] for p in PHASES]
    phase = rng.choices(names, weights=[p[1] for p in PHASES])[0]
    delays = next(p[2] for p in PHASES if p[0] == phase)
    triggers = {
        PHASES[0][0]: (RequestKind.CREATE, True),
        PHASES[1][0]: (RequestKind.CREATE, False),
        PHASES[2][0]: (RequestKind.DOWNLOAD, False),
    }
    return phase, triggers.get(phase), delays


def assert_no_create_repeated(torture: Torture, records: dict[str, Record]) -> None:
    """Per endpoint: every item created at least once, and more only where it was uncertain
    and then resubmitted on request (once per such episode), or where a lost state alone
    knew it was made (once per loss)."""
    items: Counter[str] = Counter()
    allowed: Counter[str] = Counter()
    for record in records.values():
        endpoint = create_endpoint(record)
        if endpoint is not None:
            items[endpoint] += 1
            allowed[endpoint] += sum(
                1 for _, item, _ in torture.resubmittable if item == record.item
            )
            allowed[endpoint] += torture.relinquished[record.item]
    made = creates(torture.sandbox)
    for endpoint, count in items.items():
        assert count <= made.get(endpoint, 0) <= count + allowed[endpoint], (
            endpoint, made.get(endpoint), count, allowed[endpoint]
        )  # fmt: skip


def assert_videos_are_their_tasks(
    campaign: Campaign, sandbox: Sandbox, records: dict[str, Record]
) -> None:
    for record in records.values():
        if record.section == "videos":
            assert record.output is not None and record.task_id is not None
            data = (campaign.output_dir / record.output).read_bytes()
            assert data == sandbox.output_bytes(record.task_id), record.item


@pytest.mark.slow
@pytest.mark.parametrize("faults", [Faults(), CREATE_5XX], ids=["sound", "create_5xx"])
def test_sigkill_at_random_moments_loses_nothing_and_pays_once(
    tmp_path: Path, faults: Faults
) -> None:
    torture_campaign(tmp_path, faults, kills=KILLS, rows=ROWS)


@pytest.mark.slow
def test_sigkill_at_random_moments_with_the_state_in_postgresql(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same torture with the state in a PostgreSQL database (``HIFLY_STATE``), fewer
    kills on a smaller campaign. Losing the local state deletes ``.hifly/`` and the
    campaign's rows in the database. After every kill the campaign's lock in the database is
    free again: the killed run's session ended with its process, and the next run is not
    refused."""
    monkeypatch.setenv("HIFLY_STATE", pg_url)
    waits: list[tuple[float, int]] = []

    def lock_is_free() -> None:
        waits.append(wait_for_the_run_lock(pg_url, within=LOCK_FREED_WITHIN))

    torture = torture_campaign(tmp_path, Faults(), kills=PG_KILLS, rows=PG_ROWS,
                               after_kill=lock_is_free)  # fmt: skip
    assert len(waits) == torture.kills >= 20
    assert wait_for_the_run_lock(pg_url, within=0.0)[1] == 0  # and free at the end
    print(
        f"  database lock: free after each of the {len(waits)} kills, taken at most "
        f"{max(w for w, _ in waits) * 1000:.1f} ms after the killed run was reaped; "
        f"{sum(r > 0 for _, r in waits)} kills left it held for a moment "
        f"({sum(r for _, r in waits)} refusals in all, {LOCK_FREED_WITHIN:g} s allowed)"
    )


def wait_for_the_run_lock(url: str, *, within: float) -> tuple[float, int]:
    """How long until a run could take the campaign's lock in the database (seconds, from
    now to the lock taken, a connection included), and how many times it was refused
    meanwhile; fails once refused for ``within`` seconds."""
    started = time.monotonic()
    refused = 0
    while True:
        try:
            with PostgresState(url, "campaign", "sandbox") as store, store.run_lock():
                return time.monotonic() - started, refused
        except DatabaseLocked as held:
            refused += 1
            waited = time.monotonic() - started
            assert waited < within, f"still held {waited:.1f} s after the kill: {held}"
            time.sleep(0.01)


def torture_campaign(
    tmp_path: Path,
    faults: Faults,
    *,
    kills: int,
    rows: int,
    after_kill: Callable[[], None] | None = None,
) -> Torture:
    """Kill ``kills`` runs of a campaign of ``rows`` videos at random moments (seed
    ``SEED``), finish it, then check it lost nothing and paid once, and print the figures.
    ``after_kill`` is called as each killed run is reaped."""
    rng = random.Random(SEED)
    started = time.monotonic()
    with Sandbox(tmp_path / "world", CONFIG) as sandbox:
        sandbox.set_faults(faults)
        campaign = Campaign(tmp_path / "c", rows=rows, concurrency=8, template=LONG_TEMPLATE)
        campaign.write()
        torture = Torture(campaign, sandbox, after_kill=after_kill)
        switch = KillSwitch(sandbox)
        # Once during the torture, when there is a lock file, the local state is lost between
        # two runs: right after a kill, preferably one whose work the state alone records.
        lose_state_after = rng.randrange(kills // 4, 3 * kills // 4)
        runs = 0
        while torture.kills < kills:
            runs += 1
            assert runs < 4 * kills, "the runs stopped reaching the kill points"
            killed = one_killed_run(torture, switch, rng, resubmit=rng.random() < 0.25)
            if (
                killed
                and not torture.epoch
                and torture.kills >= lose_state_after
                and torture.locked
                and (torture.unrecorded() or torture.kills >= lose_state_after + 8)
            ):
                torture.lose_state(f"after kill {torture.kills} (run {runs})")
            if torture.finished_runs and torture.kills < kills and _all_done(torture):
                campaign.rows += 10  # keep work coming so later kills hit real work
                campaign.write()
        assert torture.epoch == 1, "the local state was never lost during the torture"
        injected = dict(sandbox.counters().faults)
        sandbox.set_faults(Faults())  # the runs that finish the campaign meet no fault
        before = Before.of(campaign)
        final = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        assert final.code in (0, 1), final.stderr
        records = torture.after_process(before, finished=True)
        uncertain_at_end = sum(_is_uncertain(r) for r in records.values())
        if uncertain_at_end:
            assert final.code == 1
            torture.before_resubmit()
            before = Before.of(campaign)
            again = cli("run", "--no-progress", str(campaign.manifest), "--resubmit-uncertain",
                        sandbox=sandbox)  # fmt: skip
            assert again.code == 0, again.stderr
            torture.after_process(before, finished=True)
        else:
            assert final.code == 0, final.stderr
        records = torture.records()
        assert {r.status for r in records.values()} == {Status.DONE}
        assert len(records) == campaign.rows + 4
        assert len(output_files(campaign)) >= campaign.rows
        assert_videos_are_their_tasks(campaign, sandbox, records)
        assert_outputs_whole(campaign, sandbox, records)
        assert_no_create_repeated(torture, records)

        # The local state lost for good (a new machine, an evicted CI cache): the lock file
        # alone carries the campaign, and nothing is made or uploaded again.
        made, sent, fetched = creates(sandbox), uploads(sandbox), _downloads(sandbox)
        assert torture.lose_state("at the end") == 0
        before = Before.of(campaign)
        fresh = cli("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        assert fresh.code == 0, fresh.stderr
        assert creates(sandbox) == made, "a run with the lock file alone created again"
        assert uploads(sandbox) == sent, "a run with the lock file alone uploaded again"
        assert _downloads(sandbox) == fetched, "a run with the lock file alone downloaded again"
        after = torture.after_process(before, finished=True)
        assert {i: _made(r) for i, r in after.items()} == {i: _made(r) for i, r in records.items()}
        report = report_rows(campaign)
        assert len(report) == campaign.rows + 4
        assert {r["status"] for r in report} == {"done"}, Counter(r["status"] for r in report)
        assert {r["item"]: r["task_id"] for r in report} == {
            i: r.task_id or "" for i, r in records.items()
        }
        assert_videos_are_their_tasks(campaign, sandbox, records)

        print(
            f"\ncrash torture: {torture.kills} kills in {runs} runs "
            f"({torture.finished_runs} ran to the end), {time.monotonic() - started:.1f} s; "
            f"faults injected during the kills: {injected}"
        )
        for phase, count in sorted(torture.phases.items()):
            print(f"  {count:3d} kills: {phase}")
        print(
            f"  {torture.left_submitting} kills left an item submitting (uncertain on resume); "
            f"{torture.left_partial_download} left a temporary download file; "
            f"{torture.left_file_unrecorded} left a renamed file its state did not record yet; "
            f"{_partial_downloads(campaign)} temporary download files remain, hidden"
        )
        print(
            f"  items ever uncertain: {len({i for _, i, _ in torture.ever_uncertain})}; "
            f"uncertain at the end (then resubmitted): {uncertain_at_end}; "
            f"creates: {creates(sandbox)} for {campaign.rows} videos, "
            f"{len(torture.resubmittable)} resubmissions of uncertain items allowed, "
            f"{sum(torture.relinquished.values())} creates allowed again after the lost state"
        )
        print(
            f"  lock file: checked whole {torture.lock_checks} times; "
            f"{torture.kills_with_lock} kills landed while it existed; "
            f"{torture.lock_temporaries_left} kills left a temporary lock file "
            f"({len(lock_temporaries(campaign))} remain)"
        )
        print(
            f"  per kill: {torture.left_uncertain} items left uncertain in all "
            f"({torture.kills_leaving_uncertain} kills left any); creates on the wire at those "
            f"kill moments, by the sandbox's clock: {torture.creates_on_wire_strictly} arrived "
            f"before and answered after the kill, {torture.creates_on_wire} counting answers "
            f"sent up to {WIRE_GRACE:g} s before it (unread by a client killed then); each "
            f"uncertain item matched its own create among them, the farthest "
            f"{torture.largest_lag * 1000:.1f} ms from its kill; {torture.creates_unsent} were "
            f"marked submitting under {WIRE_GRACE:g} s before the kill, their create never "
            f"reaching the sandbox"
        )
        for loss in torture.state_losses:
            print(f"  local state deleted {loss}")
        torture.runs, torture.seconds = runs, time.monotonic() - started
        print(
            f"  then a run from the lock file alone: 0 creates, 0 uploads, 0 downloads, "
            f"{len(report)} items done"
        )
    return torture


def _downloads(sandbox: Sandbox) -> int:
    return sandbox.counters().requests.get("download", 0)


def _all_done(torture: Torture) -> bool:
    records = torture.records()
    return len(records) == torture.campaign.rows + 4 and all(
        r.status is Status.DONE for r in records.values()
    )
