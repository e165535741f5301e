"""The scheduler on its own: a fake HiFly service at the client's boundary, simulated time.

Everything else is real: the graph of a small manifest, its plan, the state store, the
runner's loop, its worker threads and the jobs. ``SimulatedWait`` is the loop's
``receive``: while jobs are out on the worker threads it waits for their events for
real; when none is out nothing can arrive, so it moves the fake clock on to the loop's
next deadline at once. Jobs take no simulated time, and simulated minutes of polling
take milliseconds.
"""

from __future__ import annotations

import itertools
import queue
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hifly_batch.api.client import AvatarTask, HiflyClient, VoiceTask, WorkTask
from hifly_batch.api.errors import SubmissionUncertain
from hifly_batch.api.transport import ApiError, Delivery, RateLimited, TransportError
from hifly_batch.apispec import (
    AUDIO_FETCH_FAILED,
    INSUFFICIENT_CREDITS,
    SUBMITTED_LIMIT,
    TOO_MANY_GENERATING,
    Endpoint,
    TaskStatus,
)
from hifly_batch.core.graph import Graph, Item, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, make_plan
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.runner import events, scheduler
from hifly_batch.runner.events import Event
from hifly_batch.runner.jobs import work_exists
from hifly_batch.runner.scheduler import (
    BACKOFF_START,
    FREE_RESENDS,
    RETRY_DELAY,
    Outcome,
    RunSettings,
    Scheduler,
)
from hifly_batch.runner.spend import CreditLimit
from hifly_batch.runner.state import Record, prior_states
from hifly_batch.runner.state_file import FileState
from tests.manifest_helpers import campaign

MANIFEST = """\
version: 1
name: sched
assets:
  clip: {file: media/founder.mp4}
  sample: {file: media/voice.wav}
data:
  customers:
    csv: customers.csv
    key: "{{ row.customer_id }}"
avatars:
  founder: {video: clip}
voices:
  cloned: {audio: sample, rate: 1.1}
videos:
  welcome:
    for_each: customers
    avatar: founder
    voice: cloned
    text: "{{ row.name }}您好"
    title: "欢迎{{ row.name }}"
"""
CUSTOMERS = "customer_id,name\n" + "".join(f"c{i},客户{i}\n" for i in range(1, 6))

UPLOADS = ("assets.clip", "assets.sample")
AVATAR, VOICE = "avatars.founder", "voices.cloned"
VIDEOS = tuple(f"videos.welcome[c{i}]" for i in range(1, 6))

# How long the fake service takes, in simulated seconds, by the name of what it makes.
SECONDS = {"avatar/create_by_video": 60.0, "cloned": 30.0}
VIDEO_SECONDS = 45.0

SLICE = 0.01  # real seconds the wait blocks at a time while jobs are out
BUDGET = 10.0  # real seconds a run may take before the test gives up on it


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    folder = tmp_path_factory.mktemp("sched")
    return build_graph(load_campaign(campaign(folder, MANIFEST, csv=CUSTOMERS)))


def name_of(item: Item) -> str:
    """What the fake service calls an item's create: its title, else its endpoint."""
    assert item.kind.endpoint is not None
    return str(item.request.get("title") or item.kind.endpoint.short)


# The fake service ----------------------------------------------------------------


class FakeClock:
    """Simulated monotonic seconds; only ``SimulatedWait`` moves them on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Call:
    """One request the fake service received, in order of arrival."""

    at: float  # simulated seconds
    what: str  # create, poll, upload, edit_voice, download; or the mark "interrupt"
    subject: str  # a create's name, a polled task's create name, a file name
    answer: object = None  # a task id, an error, a task status
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemoteTask:
    name: str
    created: float
    duration: float | None  # None: never finishes
    fails: bool
    seen_ended: bool = False

    def status(self, now: float) -> TaskStatus:
        if self.duration is None or now - self.created < self.duration:
            return TaskStatus.PROCESSING
        return TaskStatus.FAILED if self.fails else TaskStatus.DONE


# Decides a create's answer: an error to refuse it with, or None to take it.
CreateRule = Callable[["FakeHifly", str], Exception | None]


class FakeHifly:
    """The HiFly API as the jobs call it (the methods of ``HiflyClient`` they use), on a
    fake clock, logging every request. (``all_voices`` is left out: the manifest has no
    public voice to look up.)

    ``on_create`` may refuse a create (it runs under the lock, so it sees a consistent
    service); ``gate`` runs after a create is logged and before it is answered, outside
    the lock: a test blocks there to hold a create on the wire.
    """

    def __init__(
        self,
        *,
        seconds: dict[str, float | None] | None = None,
        failing: frozenset[str] = frozenset(),
        on_create: CreateRule | None = None,
        gate: Callable[[str], None] | None = None,
        callbacks: Callable[[str], bool] | None = None,
        forged: Sequence[float] = (),
        callback_delay: float = 0.0,
    ) -> None:
        self.clock = FakeClock()
        self.seconds = {**SECONDS, **(seconds or {})}
        self.failing = failing
        self.on_create = on_create
        self.gate = gate
        self.calls: list[Call] = []
        self.tasks: dict[str, RemoteTask] = {}
        self.most_generating = 0
        self.interrupted = threading.Event()
        self.transport = SimpleNamespace(secret="")  # what a crash log cuts out
        self._lock = threading.Lock()
        # Callbacks: ``callbacks(name)`` says whether a task's message is lost; ``forged``
        # sends every task a false one at each of those seconds after its create.
        self.lost = callbacks
        self.forged = sorted(forged)
        self.callback_delay = callback_delay  # seconds a true callback comes after the end
        self.sent: set[str] = set()  # tasks whose true callback was sent or lost
        self.forgeries: Counter[str] = Counter()  # of each task's forgeries, those sent
        self.heard: list[float] = []  # when each callback that was not lost arrived

    def next_callback(self, until: float) -> tuple[float, str] | None:
        """The next callback due by ``until``: (when, task id); those lost pass unsent."""
        if self.lost is None:
            return None
        with self._lock:
            due = []
            for task_id, task in self.tasks.items():
                if self.forgeries[task_id] < len(self.forged):
                    after = self.forged[self.forgeries[task_id]]
                    due.append((task.created + after, task_id, True))
                if task.duration is not None and task_id not in self.sent:
                    due.append((task.created + task.duration + self.callback_delay, task_id, False))
            for at, task_id, forged in sorted(due):
                if at > until:
                    return None
                if forged:
                    self.forgeries[task_id] += 1
                else:
                    self.sent.add(task_id)
                if forged or not self.lost(self.tasks[task_id].name):
                    self.heard.append(at)
                    return at, task_id
        return None

    @property
    def generating(self) -> int:
        """Tasks created and not yet seen ended by a poll."""
        return sum(not t.seen_ended for t in self.tasks.values())

    def log(self, what: str, subject: str | None = None) -> list[tuple[int, Call]]:
        """The calls of one kind (and subject), with their places in the log."""
        return [
            (n, c)
            for n, c in enumerate(self.calls)
            if c.what == what and subject in (None, c.subject)
        ]

    def mark_interrupt(self) -> None:
        with self._lock:
            self.calls.append(Call(self.clock(), "interrupt", ""))
        self.interrupted.set()

    # Creates: creates.py calls HiflyClient's create methods through the class, so they
    # run on this fake and reach it here, with the endpoint and body they built.
    def _create(self, endpoint: Endpoint, body: dict[str, Any]) -> str:
        name = str(body.get("title") or endpoint.short)
        with self._lock:
            refusal = self.on_create(self, name) if self.on_create else None
            task_id = f"t{len(self.tasks) + 1}"
            if refusal is None:
                duration = self.seconds.get(name, VIDEO_SECONDS)
                self.tasks[task_id] = RemoteTask(name, self.clock(), duration, name in self.failing)
                self.most_generating = max(self.most_generating, self.generating)
            answer = task_id if refusal is None else refusal
            self.calls.append(Call(self.clock(), "create", name, answer, body))
        if self.gate is not None:
            self.gate(name)
        if refusal is not None:
            raise refusal
        return task_id

    def avatar_task(self, task_id: str) -> AvatarTask:
        return AvatarTask(**self._poll(task_id), avatar=f"avatar-{task_id}")

    def voice_task(self, task_id: str) -> VoiceTask:
        return VoiceTask(**self._poll(task_id), voice=f"voice-{task_id}", demo_url="")

    def video_task(self, task_id: str) -> WorkTask:
        url = f"https://cdn.example/{task_id}.mp4"
        return WorkTask(**self._poll(task_id), url=url, duration=3)

    def _poll(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            task = self.tasks[task_id]
            status = task.status(self.clock())
            task.seen_ended = task.seen_ended or status in (TaskStatus.DONE, TaskStatus.FAILED)
            self.calls.append(Call(self.clock(), "poll", task.name, status))
        failed = status is TaskStatus.FAILED
        return {
            "task_id": task_id,
            "status": status,
            "error_code": AUDIO_FETCH_FAILED if failed else None,
            "error_message": "获取音频资源失败" if failed else "",
            "request_id": f"r-{task_id}",
        }

    def upload_file(self, path: Path) -> str:
        file_id = f"file-{path.stem}"
        self._log("upload", path.name, file_id)
        return file_id

    def download(self, url: str, dest: Path) -> int:
        data = f"bytes of {url}".encode()
        dest.write_bytes(data)
        self._log("download", url, len(data))
        return len(data)

    def edit_voice(self, voice: str, *, rate: str, volume: str, pitch: str) -> None:
        self._log("edit_voice", voice, (rate, volume, pitch))

    def _log(self, what: str, subject: str, answer: object = None) -> None:
        with self._lock:
            self.calls.append(Call(self.clock(), what, subject, answer))


# Simulated waiting ---------------------------------------------------------------


class SimulatedWait:
    """The runner's ``receive`` on the fake clock (see the module docstring).

    It also notes the runner's concurrency limit at every wait, and presses Ctrl-C (a
    real SIGINT to this process) the first time ``interrupt_when`` says so; with
    ``raise_interrupt`` it raises KeyboardInterrupt instead, as a Ctrl-C does where the
    runner has no signal handler of its own (off the main thread).
    """

    def __init__(
        self,
        service: FakeHifly,
        interrupt_when: Callable[[Scheduler], bool] | None = None,
        raise_interrupt: bool = False,
    ) -> None:
        self.service = service
        self.interrupt_when = interrupt_when
        self.raise_interrupt = raise_interrupt
        self.runner: Scheduler | None = None  # set once the runner exists
        self.limits: list[int] = []
        self.deadline = time.monotonic() + BUDGET

    def __call__(self, inbox: queue.SimpleQueue[list[Event]], timeout: float | None) -> list[Event]:
        runner = self.runner
        assert runner is not None
        assert time.monotonic() < self.deadline, "the run took too long: a job hangs?"
        self.limits.append(runner.limit)
        if self.interrupt_when is not None and self.interrupt_when(runner):
            self.interrupt_when = None
            self.service.mark_interrupt()
            if self.raise_interrupt:
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)  # the runner's handler queues an event
        if runner.jobs_out:  # short slices, so that interrupt_when is asked again soon
            return inbox.get(timeout=SLICE if timeout is None else min(timeout, SLICE))
        assert timeout is not None, "nothing is due and no job is out: the run would hang"
        callback = self.service.next_callback(self.service.clock() + timeout)
        if callback is not None:  # the service calls back before the loop's deadline
            at, task_id = callback
            self.service.clock.advance(at - self.service.clock())
            return [events.Hinted("", task_id)]
        self.service.clock.advance(timeout)
        raise queue.Empty


@dataclass
class Run:
    outcome: Outcome
    records: dict[str, Record]
    limits: list[int]  # the runner's concurrency limit at each wait of its loop
    progress: list[tuple[dict[str, int], int]]  # each call of on_progress: counts, total


def simulate(
    graph: Graph,
    folder: Path,
    service: FakeHifly,
    *,
    scope: set[str] | None = None,
    interrupt_when: Callable[[Scheduler], bool] | None = None,
    raise_interrupt: bool = False,
    credit_limit: CreditLimit | None = None,
    callbacks: bool = False,
    **settings: Any,
) -> Run:
    """Run the plan of ``graph`` (of ``scope``: all of it by default) against ``service``;
    ``settings`` override the defaults."""
    wait = SimulatedWait(service, interrupt_when, raise_interrupt)
    options = {
        "concurrency": 4,
        "poll_interval": 5.0,
        "poll_max": 20.0,
        "task_timeout": 600.0,
        "max_attempts": 3,
        **settings,
    }
    client: HiflyClient = service  # type: ignore[assignment]  # the same methods, faked
    progress: list[tuple[dict[str, int], int]] = []
    with FileState(folder / "state.db") as store:
        runner = Scheduler(
            graph,
            make_plan(graph, {}),
            store,
            client,
            RunSettings(folder / "out", **options),
            scope=scope,
            on_progress=lambda counts, total: progress.append((counts, total)),
            clock=service.clock,
            receive=wait,
            credit_limit=credit_limit,
            callbacks=callbacks,
        )
        wait.runner = runner
        outcome = runner.run()
        records = store.records()
    return Run(outcome, records, wait.limits, progress)


def statuses(run: Run, ids: tuple[str, ...]) -> set[Status]:
    return {run.records[i].status for i in ids}


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def video_names(graph: Graph) -> list[str]:
    return [name_of(graph[v]) for v in VIDEOS]


def refusing(code: int, *, when: Callable[[FakeHifly, str], bool]) -> CreateRule:
    endpoint = Endpoint.VIDEO_CREATE_BY_TTS

    def rule(service: FakeHifly, name: str) -> Exception | None:
        return ApiError(code, endpoint) if when(service, name) else None

    return rule


# Tests --------------------------------------------------------------------------


def test_each_item_is_made_only_from_inputs_already_done(graph: Graph, tmp_path: Path) -> None:
    service = FakeHifly()
    run = simulate(graph, tmp_path, service)

    assert run.outcome == Outcome(
        {"done": 9, "failed": 0, "uncertain": 0, "blocked": 0, "running": 0, "queued": 0}
    )
    assert statuses(run, tuple(run.records)) == {Status.DONE}
    [(clip, _)] = service.log("upload", "founder.mp4")
    [(sample, _)] = service.log("upload", "voice.wav")
    [(avatar, made_avatar)] = service.log("create", name_of(graph[AVATAR]))
    [(voice, made_voice)] = service.log("create", name_of(graph[VOICE]))
    assert clip < avatar and made_avatar.body["file_id"] == "file-founder"
    assert sample < voice and made_voice.body["file_id"] == "file-voice"
    avatar_task, voice_task = made_avatar.answer, made_voice.answer
    avatar_done = max(n for n, c in service.log("poll", name_of(graph[AVATAR])))
    voice_done = max(n for n, c in service.log("poll", name_of(graph[VOICE])))
    [(edit, edited)] = service.log("edit_voice")
    assert voice_done < edit and edited.subject == run.records[VOICE].resource_id
    for name in video_names(graph):
        [(create, made)] = service.log("create", name)
        assert max(avatar_done, edit) < create
        assert made.body["avatar"] == run.records[AVATAR].resource_id == f"avatar-{avatar_task}"
        assert made.body["voice"] == run.records[VOICE].resource_id == f"voice-{voice_task}"
    for video in VIDEOS:
        record = run.records[video]
        assert record.output is not None
        assert (tmp_path / "out" / record.output).stat().st_size == record.output_size


def test_no_more_creation_tasks_are_in_flight_than_the_concurrency_allows(
    graph: Graph, tmp_path: Path
) -> None:
    service = FakeHifly()
    run = simulate(graph, tmp_path, service, concurrency=2)

    assert statuses(run, VIDEOS) == {Status.DONE}
    assert len(service.log("create")) == 2 + len(VIDEOS)
    assert service.most_generating == 2


@pytest.mark.parametrize("code", [TOO_MANY_GENERATING, SUBMITTED_LIMIT])
def test_back_pressure_never_uses_up_attempts_and_the_limit_grows_back(
    graph: Graph, tmp_path: Path, code: int
) -> None:
    refused: list[str] = []

    def busy(service: FakeHifly, name: str) -> bool:
        """With two videos generating the service refuses another, twice; then takes all."""
        if name.startswith("欢迎") and service.generating >= 2 and len(refused) < 2:
            refused.append(name)
            return True
        return False

    service = FakeHifly(on_create=refusing(code, when=busy))
    run = simulate(graph, tmp_path, service, concurrency=4, max_attempts=1)

    assert run.outcome.counts["failed"] == 0
    assert statuses(run, VIDEOS) == {Status.DONE}
    assert {run.records[v].attempts for v in VIDEOS} == {1}
    assert len(refused) == 2
    for name in refused:
        [(_, first), (_, again)] = service.log("create", name)
        assert isinstance(first.answer, ApiError) and first.answer.code == code
        assert again.answer in service.tasks and again.at >= first.at + BACKOFF_START
    assert max(run.limits) == 4
    shrunk = run.limits.index(min(run.limits))
    assert run.limits[shrunk] < 4 and run.limits[-1] == 4


def test_a_refused_create_is_sent_again_after_a_back_off_that_doubles(
    graph: Graph, tmp_path: Path
) -> None:
    """Other work fills the account's quota: nothing of this run's is generating, so only
    the back-off spaces the tries."""
    video = VIDEOS[0]

    def quota_full(service: FakeHifly, name: str) -> bool:
        return name == name_of(graph[video]) and len(service.log("create", name)) < 3

    service = FakeHifly(on_create=refusing(TOO_MANY_GENERATING, when=quota_full))
    scope = {video, AVATAR, VOICE, *UPLOADS}  # the video and what it needs
    run = simulate(graph, tmp_path, service, scope=scope, max_attempts=1)

    assert run.records[video].status is Status.DONE and run.records[video].attempts == 1
    tries = [c.at for _, c in service.log("create", name_of(graph[video]))]
    assert gaps(tries) == [pytest.approx(BACKOFF_START * 2**n) for n in range(3)]
    assert run.outcome.counts["done"] == 5


def test_a_task_is_polled_from_poll_interval_with_gaps_up_to_poll_max(
    graph: Graph, tmp_path: Path
) -> None:
    service = FakeHifly(seconds={"avatar/create_by_video": 100.0})
    run = simulate(graph, tmp_path, service, poll_interval=5.0, poll_max=20.0)

    assert run.records[AVATAR].status is Status.DONE
    [(_, created)] = service.log("create", "avatar/create_by_video")
    polls = service.log("poll", "avatar/create_by_video")
    times = [c.at - created.at for _, c in polls]
    steps = gaps(times)
    assert times[0] == pytest.approx(5.0)
    assert steps == sorted(steps) and max(steps) == pytest.approx(20.0)
    assert times[-2] < 100.0 <= times[-1]
    assert [c.answer for _, c in polls[:-1]] == [TaskStatus.PROCESSING] * (len(polls) - 1)
    # 5, 7.5, 11.25, 16.9, 25.3, 38.0, 57.0 (gaps grow by half), then every 20 s
    assert len(polls) == 10


def test_a_task_that_never_finishes_times_out_and_blocks_its_users(
    graph: Graph, tmp_path: Path
) -> None:
    service = FakeHifly(seconds={"avatar/create_by_video": None})
    run = simulate(graph, tmp_path, service, task_timeout=120.0, poll_max=20.0)

    avatar = run.records[AVATAR]
    assert avatar.status is Status.FAILED and work_exists(avatar)
    assert (avatar.error_message or "").startswith("timed out: not finished after 2 min")
    [(_, created)] = service.log("create", "avatar/create_by_video")
    times = [c.at - created.at for _, c in service.log("poll", "avatar/create_by_video")]
    assert times[-2] <= 120.0 < times[-1] <= 120.0 + 20.0
    assert statuses(run, VIDEOS) == {Status.BLOCKED}
    assert not any(service.log("create", name) for name in video_names(graph))
    assert run.records[VOICE].status is Status.DONE
    counts = run.outcome.counts
    assert (counts["done"], counts["failed"], counts["blocked"]) == (3, 1, 5)


def test_a_failed_task_fails_its_item_and_blocks_only_its_users(
    graph: Graph, tmp_path: Path
) -> None:
    service = FakeHifly(failing=frozenset({"cloned"}))  # ends after 30 s, the avatar at 60 s
    run = simulate(graph, tmp_path, service)

    voice = run.records[VOICE]
    assert voice.status is Status.FAILED
    assert (voice.error_code, voice.error_message) == (AUDIO_FETCH_FAILED, "获取音频资源失败")
    assert statuses(run, VIDEOS) == {Status.BLOCKED}
    assert not any(service.log("create", name) for name in video_names(graph))
    assert not service.log("edit_voice")
    voice_failed = max(n for n, _ in service.log("poll", "cloned"))
    avatar_done = max(n for n, _ in service.log("poll", "avatar/create_by_video"))
    assert voice_failed < avatar_done and run.records[AVATAR].status is Status.DONE
    counts = run.outcome.counts
    assert (counts["done"], counts["failed"], counts["blocked"]) == (3, 1, 5)


@pytest.mark.parametrize(("failures", "status"), [(5, Status.DONE), (8, Status.FAILED)])
def test_a_create_that_was_not_made_is_sent_again_freely_then_up_to_max_attempts(
    graph: Graph, tmp_path: Path, failures: int, status: Status
) -> None:
    """Not sent, or answered 5xx: sent again FREE_RESENDS times per attempt without using
    one up, each time after a doubling backoff; then the next attempt, up to max_attempts."""

    def not_sent(service: FakeHifly, name: str) -> Exception | None:
        if name == "cloned" and len(service.log("create", "cloned")) < failures:
            return TransportError("voice/create", Delivery.NOT_SENT, "Connection refused")
        return None

    service = FakeHifly(on_create=not_sent)
    run = simulate(graph, tmp_path, service, max_attempts=2)

    voice = run.records[VOICE]
    per_attempt = FREE_RESENDS + 1
    tries = [c.at for _, c in service.log("create", "cloned")]
    assert len(tries) == min(failures + 1, 2 * per_attempt)
    resends = [RETRY_DELAY * 2**n for n in range(FREE_RESENDS)]
    expected = [*resends, RETRY_DELAY, *resends][: len(tries) - 1]
    assert gaps(tries) == [pytest.approx(g) for g in expected]
    assert voice.status is status and voice.attempts == 2  # resends use no attempt
    if status is Status.FAILED:
        assert "Connection refused" in (voice.error_message or "")
        assert statuses(run, VIDEOS) == {Status.BLOCKED}
        assert not any(service.log("create", name) for name in video_names(graph))
    else:
        assert statuses(run, VIDEOS) == {Status.DONE}


def test_a_create_waiting_for_its_retry_is_pending_not_failed(graph: Graph, tmp_path: Path) -> None:
    """A kill during the backoff leaves nothing uncertain or failed: the item is pending
    again as soon as its retry is planned (here the run is stopped right then)."""

    def refused_once(service: FakeHifly, name: str) -> Exception | None:
        if name == "cloned" and not service.log("create", "cloned"):
            return TransportError("voice/create", Delivery.SERVER_ERROR, "HTTP 503")
        return None

    service = FakeHifly(on_create=refused_once)
    waiting = lambda runner: any(item == VOICE for _, _, item in runner.later)  # noqa: E731
    run = simulate(graph, tmp_path, service, interrupt_when=waiting)
    assert run.outcome.interrupted
    assert run.records[VOICE].status is Status.PENDING and run.records[VOICE].task_id is None


def test_a_ctrl_c_while_the_loop_handles_events_loses_none_of_them(
    graph: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal lands as the loop takes a create's answer, before it has handled the
    batch that also says the job ended: the run still takes both (else it would wait out
    the grace period for an answer already there) and records the task."""
    submitted = scheduler._HANDLERS[events.Submitted]
    answered: list[str] = []

    def ctrl_c_first(runner: Scheduler, event: events.Event) -> None:
        if not answered and runner.graph[event.item_id].kind.value == "video_by_tts":
            answered.append(event.item_id)
            signal.raise_signal(signal.SIGINT)
        submitted(runner, event)

    monkeypatch.setitem(scheduler._HANDLERS, events.Submitted, ctrl_c_first)
    run = simulate(graph, tmp_path, FakeHifly(), concurrency=1)
    assert run.outcome.interrupted and not run.outcome.terminated
    (video,) = answered
    assert run.records[video].status is Status.RUNNING and run.records[video].task_id


@pytest.mark.parametrize(("asked", "waited"), [(7.0, 7.0), (300.0, 20.0)])
def test_a_429_on_a_create_pauses_every_create_as_asked_up_to_poll_max(
    graph: Graph, tmp_path: Path, asked: float, waited: float
) -> None:
    def once(service: FakeHifly, name: str) -> Exception | None:
        if name.startswith("欢迎") and not service.log("refused"):
            service.calls.append(Call(service.clock(), "refused", name))
            return RateLimited("video/create_by_tts", asked)
        return None

    service = FakeHifly(on_create=once)
    run = simulate(graph, tmp_path, service, poll_max=20.0)
    assert statuses(run, VIDEOS) == {Status.DONE}
    assert all(run.records[v].attempts == 1 for v in VIDEOS)  # the 429 used no try
    ((_, refused),) = service.log("refused")
    after = [c.at for _, c in service.log("create") if c.at > refused.at]
    assert after and min(after) == pytest.approx(refused.at + waited)


def test_a_work_finished_without_an_output_url_fails_saying_so_and_keeps_its_mark(
    graph: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def without_url(self: FakeHifly, task_id: str) -> WorkTask:
        return WorkTask(**self._poll(task_id), url="", duration=3)

    monkeypatch.setattr(FakeHifly, "video_task", without_url)
    run = simulate(graph, tmp_path, FakeHifly())
    for video in VIDEOS:
        record = run.records[video]
        assert record.status is Status.FAILED and record.work_exists, record
        assert f"task {record.task_id} finished without an output URL" in (
            record.error_message or ""
        )


def test_a_bug_in_one_job_fails_its_item_with_a_crash_log_and_the_run_goes_on(
    graph: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def buggy(service: FakeHifly, name: str) -> Exception | None:
        if name == "欢迎客户3":
            raise ZeroDivisionError("a bug")
        return None

    run = simulate(graph, tmp_path, FakeHifly(on_create=buggy))
    third = run.records["videos.welcome[c3]"]
    assert third.status is Status.UNCERTAIN  # its create may have gone out: never resent
    assert "internal error: ZeroDivisionError: a bug (details in" in (third.error_message or "")
    (log,) = tmp_path.glob("hifly-batch-crash-*.log")
    assert "ZeroDivisionError" in log.read_text()
    others = tuple(v for v in VIDEOS if v != "videos.welcome[c3]")
    assert statuses(run, others) == {Status.DONE}  # the run went on


def test_running_out_of_credits_stops_submitting_and_finishes_running_tasks(
    graph: Graph, tmp_path: Path
) -> None:
    def broke(service: FakeHifly, name: str) -> bool:
        """The credits pay for one video."""
        return any(
            c.subject.startswith("欢迎") and c.answer in service.tasks
            for _, c in service.log("create")
        )

    service = FakeHifly(on_create=refusing(INSUFFICIENT_CREDITS, when=broke))
    run = simulate(graph, tmp_path, service, concurrency=2)

    assert run.outcome.out_of_credits and not run.outcome.interrupted
    made, refused = [c for _, c in service.log("create") if c.subject.startswith("欢迎")]
    assert made.answer in service.tasks and isinstance(refused.answer, ApiError)
    by_name = {name_of(graph[v]): run.records[v] for v in VIDEOS}
    done = by_name.pop(made.subject)
    assert done.status is Status.DONE and done.output is not None
    assert service.log("download", f"https://cdn.example/{done.task_id}.mp4")
    waiting = by_name.pop(refused.subject)
    assert (waiting.status, waiting.error_code, waiting.attempts) == (
        Status.PENDING,
        INSUFFICIENT_CREDITS,
        0,
    )
    assert {(r.status, r.attempts) for r in by_name.values()} == {(Status.PENDING, 0)}
    assert (run.outcome.counts["done"], run.outcome.counts["failed"]) == (5, 0)


def test_an_interrupt_between_polls_sends_nothing_more(graph: Graph, tmp_path: Path) -> None:
    def two_videos_generating(runner: Scheduler) -> bool:
        if runner.jobs_out:  # the moment must be one with no worker busy
            return False
        made = [c for _, c in service.log("create") if c.answer in service.tasks]
        return sum(c.subject.startswith("欢迎") for c in made) == 2

    service = FakeHifly()
    run = simulate(graph, tmp_path, service, concurrency=2, interrupt_when=two_videos_generating)

    assert run.outcome.interrupted and not run.outcome.out_of_credits
    assert service.calls[-1].what == "interrupt"
    running = [v for v in VIDEOS if run.records[v].status is Status.RUNNING]
    assert len(running) == 2
    assert all(run.records[v].task_id in service.tasks for v in running)
    rest = [v for v in VIDEOS if v not in running]
    assert {(run.records[v].status, run.records[v].attempts) for v in rest} == {(Status.PENDING, 0)}
    rerun = {s.item.id: s.action for s in make_plan(graph, prior_states(run.records)).steps}
    assert {rerun[v] for v in running} == {Action.RESUME}
    assert {rerun[v] for v in rest} == {Action.CREATE}


@pytest.mark.parametrize("raise_interrupt", [False, True], ids=["signalled", "raised"])
def test_an_interrupt_waits_for_answers_to_creates_sent_and_sends_no_queued_one(
    graph: Graph, tmp_path: Path, raise_interrupt: bool
) -> None:
    """Two video creates are dispatched together; the Ctrl-C comes while the first is on
    the wire. The second is then queued behind it on the one worker thread, or, had the
    pool grown, sent before the Ctrl-C (and held too)."""
    on_the_wire = threading.Event()

    def hold_videos(name: str) -> None:
        """Their answers come back only after the Ctrl-C, and not at once."""
        if name.startswith("欢迎"):
            on_the_wire.set()
            assert service.interrupted.wait(BUDGET)
            time.sleep(0.02)

    service = FakeHifly(gate=hold_videos)
    run = simulate(
        graph,
        tmp_path,
        service,
        concurrency=2,
        interrupt_when=lambda _: on_the_wire.is_set(),
        raise_interrupt=raise_interrupt,
    )

    assert run.outcome.interrupted
    assert service.calls[-1].what == "interrupt"  # nothing arrived after it
    sent = {c.subject: c.answer for _, c in service.log("create") if c.subject.startswith("欢迎")}
    assert 1 <= len(sent) <= 2
    for video in VIDEOS:
        record, name = run.records[video], name_of(graph[video])
        if name in sent:  # answered after the Ctrl-C, and recorded before the run returned
            assert (record.status, record.task_id) == (Status.RUNNING, sent[name])
        else:
            assert (record.status, record.attempts) == (Status.PENDING, 0)


def _first_video_lost(service: FakeHifly, name: str) -> Exception | None:
    """The first video's create may have been made: its answer is lost."""
    earlier = any(c.subject.startswith("欢迎") for _, c in service.log("create"))
    if name.startswith("欢迎") and not earlier:
        return SubmissionUncertain("video/create_by_tts", Delivery.UNANSWERED, "lost")
    return None


@pytest.mark.parametrize(
    ("service", "settings", "final"),
    [
        (lambda: FakeHifly(), {}, {"done": 9}),
        (
            lambda: FakeHifly(failing=frozenset({"cloned"})),
            {},
            {"done": 3, "failed": 1, "blocked": 5},
        ),
        (lambda: FakeHifly(on_create=_first_video_lost), {}, {"done": 8, "uncertain": 1}),
        (
            lambda: FakeHifly(
                on_create=refusing(INSUFFICIENT_CREDITS, when=lambda s, n: n.startswith("欢迎"))
            ),
            {"concurrency": 2},
            {"done": 4, "queued": 5},
        ),
        (
            lambda: FakeHifly(),
            {"credit_limit": CreditLimit(2.0, dict.fromkeys(VIDEOS, 1.0))},
            {"done": 6, "queued": 3},  # two videos paid for, three held back
        ),
    ],
    ids=["done", "blocked", "uncertain", "out-of-credits", "max-credits"],
)
def test_the_progress_counts_add_up_to_the_total_at_every_call(
    graph: Graph,
    tmp_path: Path,
    service: Callable[[], FakeHifly],
    settings: dict[str, Any],
    final: dict[str, int],
) -> None:
    run = simulate(graph, tmp_path, service(), **settings)

    assert run.progress, "on_progress was never called"
    for counts, total in run.progress:
        assert list(counts) == ["done", "failed", "uncertain", "blocked", "running", "queued"]
        assert sum(counts.values()) == total == 9 and min(counts.values()) >= 0, counts
    settled = [
        sum(c[k] for k in ("done", "failed", "uncertain", "blocked")) for c, _ in run.progress
    ]
    assert settled == sorted(settled)  # the bar never goes back
    expected = dict.fromkeys(["done", "failed", "uncertain", "blocked", "running", "queued"], 0)
    assert run.progress[-1][0] == run.outcome.counts == {**expected, **final}


# Callbacks ------------------------------------------------------------------------

MANY = 30  # videos: enough for the backstop to learn (HEARD_MIN) and use what it learned


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    folder = tmp_path_factory.mktemp("many")
    rows = "customer_id,name\n" + "".join(f"c{i},客户{i}\n" for i in range(1, MANY + 1))
    return build_graph(load_campaign(campaign(folder, MANIFEST, csv=rows)))


# Videos take 40 to 49 s; poll_max is far later, so a poll at poll_max is easy to tell.
VARIED = {f"欢迎客户{i}": 40.0 + (7 * i) % 10 for i in range(1, MANY + 1)}
CALLBACK_SETTINGS = {"callbacks": True, "poll_interval": 5.0, "poll_max": 120.0}


def video_polls(service: FakeHifly) -> dict[str, list[Call]]:
    """Each video's task: its create and the polls of it, by name."""
    return {name: [c for _, c in service.log("poll", name)] for name in VARIED}


def finish_of(service: FakeHifly, name: str) -> float:
    [(_, create)] = service.log("create", name)
    return create.at + VARIED[name]


def test_with_callbacks_each_task_is_queried_once_as_it_ends_and_the_run_ends_with_it(
    many: Graph, tmp_path: Path
) -> None:
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: False)
    run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    for name, polls in video_polls(service).items():
        assert [c.at for c in polls] == [finish_of(service, name)], name
        assert polls[0].answer is TaskStatus.DONE
    # Nothing was left to wait for: the backstops planned at poll_max went with the tasks.
    assert service.clock() == max(finish_of(service, n) for n in VARIED)


def test_clones_are_polled_as_without_callbacks_until_one_of_theirs_comes(
    many: Graph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An account calls back works by default, clones only with V2 event callbacks on:
    with works' callbacks coming and no clone's, the avatar (60 s) and the voice (30 s)
    are polled from poll_interval as without --callbacks, not first at poll_max (120 s)."""
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: name not in VARIED)
    with caplog.at_level("WARNING", logger="hifly_batch"):
        run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    for name, seconds in (("avatar/create_by_video", 60.0), ("cloned", 30.0)):
        [(_, create)] = service.log("create", name)
        polls = [c.at - create.at for _, c in service.log("poll", name)]
        assert polls[0] == 5.0 and seconds <= polls[-1] < 120.0, (name, polls)
    assert "no callback has come" not in caplog.text
    assert all(len(p) == 1 for p in video_polls(service).values())


def test_a_lost_callback_is_found_soon_after_the_latest_that_came(
    many: Graph, tmp_path: Path
) -> None:
    def lost(name: str) -> bool:
        return name in VARIED and int(name.removeprefix("欢迎客户")) % 3 == 0

    service = FakeHifly(seconds=VARIED, callbacks=lost)
    run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    polls = video_polls(service)
    assert all(len(p) == 1 and p[0].answer is TaskStatus.DONE for p in polls.values())
    trusted = sorted(service.heard)[9]  # HEARD_MIN callbacks have come
    late = []
    for name in filter(lost, VARIED):
        [(_, create)] = service.log("create", name)
        waited = polls[name][0].at - create.at
        if create.at >= trusted:  # once learned: by 1.05 x the longest task, not poll_max
            assert waited <= 1.05 * 49.0 + 1e-6, (name, waited)
        late.append(waited)
    assert max(late) <= 120.0 and min(late) < 60.0


def test_a_callback_before_the_end_costs_one_query_and_moves_no_poll(
    many: Graph, tmp_path: Path
) -> None:
    """A forged callback (or one sent early) for every task, 1 s after its create, and
    every true one lost: each forgery costs a query that finds the task running, and
    teaches nothing; the backstop at poll_max finds each task, as without callbacks."""
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: True, forged=(1.0,))
    run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    for name, polls in video_polls(service).items():
        [(_, create)] = service.log("create", name)
        assert [c.at - create.at for c in polls] == [1.0, 120.0], name
        assert [c.answer for c in polls] == [TaskStatus.PROCESSING, TaskStatus.DONE]


def test_a_flood_of_callbacks_queries_a_task_at_most_once_per_poll_interval(
    many: Graph, tmp_path: Path
) -> None:
    """Ten forged callbacks a second for every task, from 1 s after its create to past its
    end, and every true one lost: a task is queried for them no more often than
    poll_interval (5 s), and each still ends done by its own task's answer."""
    flood = tuple(1.0 + n / 10 for n in range(600))  # 1 s to 61 s, past the longest task
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: True, forged=flood)
    run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    for name, polls in video_polls(service).items():
        times = [c.at for c in polls]
        assert all(b - a >= 5.0 - 1e-9 for a, b in itertools.pairwise(times)), (name, times)
        assert times[-1] - finish_of(service, name) <= 5.0 + 1e-9, (name, times)
        assert polls[-1].answer is TaskStatus.DONE


def test_callbacks_that_come_after_their_tasks_were_found_still_show_callbacks_arrive(
    many: Graph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each callback 25 s late, after the backstop (every poll_max, 20 s) has found its
    task ended: they name tasks of the run all the same, so no warning that none come."""
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: False, callback_delay=25.0)
    with caplog.at_level("INFO", logger="hifly_batch"):
        run = simulate(many, tmp_path, service, callbacks=True)

    assert run.outcome.counts["done"] == MANY + 4
    assert "no callback has come" not in caplog.text
    assert "callbacks named" in caplog.text


def test_when_no_callback_comes_the_run_says_so_and_polls_as_without_them(
    many: Graph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback URL that does not reach the run: after UNHEARD tasks have ended with no
    callback at all, a warning, and the tasks sent from then on are polled as they would
    be without --callbacks, not every poll_max."""
    service = FakeHifly(seconds=VARIED, callbacks=lambda name: True)
    with caplog.at_level("WARNING", logger="hifly_batch"):
        run = simulate(many, tmp_path, service, **CALLBACK_SETTINGS)

    assert run.outcome.counts["done"] == MANY + 4
    [warning] = [r.getMessage() for r in caplog.records if "no callback has come" in r.message]
    assert "callback URL reaches this run's --callbacks address" in warning
    firsts = []
    for name in VARIED:
        [(_, create)] = service.log("create", name)
        firsts.append(service.log("poll", name)[0][1].at - create.at)
    assert firsts[0] == 120.0  # (sent before the run knew)
    assert firsts[-1] < 60.0  # learned from polls, near the tasks' 40-49 s
