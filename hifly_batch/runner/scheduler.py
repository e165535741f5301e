"""The run: carries a plan out in dependency order with one pool of HTTP workers.

One loop thread owns every decision: which items are ready, how many
creation tasks may be generating, when each task is polled. Workers
(``jobs.py``, on the threads of ``workers.py``, which grow only while calls
are slow) do the HTTP calls and state writes and post events back. No thread
sleeps per task: polls sit in one heap ordered by due time, and the loop waits
on the event queue until the next one is due, or until the pool needs tending.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from hifly_batch.api.client import HiflyClient
from hifly_batch.apispec import INSUFFICIENT_CREDITS, PAID_ENDPOINTS
from hifly_batch.core.graph import Graph, Item, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, Plan
from hifly_batch.errors import Terminated
from hifly_batch.manifest.model import Settings
from hifly_batch.runner import events, jobs
from hifly_batch.runner.creates import CREATE_KINDS
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.polling import Backstop, PollPlanner
from hifly_batch.runner.spend import CreditLimit
from hifly_batch.runner.state import Record, StateStore, new_record
from hifly_batch.runner.workers import WorkerPool

BACKOFF_START = 1.0  # seconds before an item refused with 1001/1015 is sent again
BACKOFF_MAX = 30.0
RETRY_DELAY = 2.0  # before a transient failure's next attempt (doubles per attempt)
FREE_RESENDS = 3  # per attempt: a create provably not made is sent up to 4 times
CREATE_GRACE = 30.0  # on interrupt, how long to wait for answers to creates already sent
SETTLED = ("done", "failed", "uncertain", "blocked")  # what a run can make of an item
UNHEARD = 5  # tasks ended with no callback at all in the run: callbacks are not arriving
# Kinds whose tasks the service calls back by default: works (消息回调 type 1). Avatar and
# voice clones (types 2, 3) are called back only once the account turns V2 event
# callbacks on, so their kinds are polled as without callbacks until one of theirs comes.
CALLED_BACK = frozenset(
    k.value for k in (ItemKind.VIDEO_BY_TTS, ItemKind.VIDEO_BY_AUDIO, ItemKind.AUDIO_BY_TTS)
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    output_dir: Path
    concurrency: int = 4
    poll_interval: float = 5.0
    poll_max: float = 60.0
    task_timeout: float = 7200.0
    max_attempts: int = 3

    @classmethod
    def of(cls, settings: Settings, *, concurrency: int | None = None) -> RunSettings:
        """The run settings a manifest asks for; ``concurrency`` overrides its own."""
        return cls(
            output_dir=settings.output_dir,
            concurrency=concurrency or settings.concurrency,
            poll_interval=settings.poll_interval,
            poll_max=settings.poll_max,
            task_timeout=settings.task_timeout,
            max_attempts=settings.max_attempts,
        )


@dataclass
class Outcome:
    """What a run ended with; the CLI turns it into an exit code and a summary."""

    counts: dict[str, int]
    interrupted: bool = False  # by Ctrl-C or SIGTERM
    out_of_credits: bool = False
    terminated: bool = False  # by SIGTERM
    held: tuple[str, ...] = ()  # items whose paid create --max-credits held back


@dataclass
class _Task:
    """Poll bookkeeping for one submitted task (monotonic seconds)."""

    kind: str
    created: float
    first_poll: float
    learned: bool
    polled_at: float = 0.0  # since created
    previous_gap: float | None = None
    last_running: float = 0.0
    learn: bool = True  # False when re-polling a task already seen finished
    hinted: float | None = None  # since created, when a callback named it
    hint_query: float = -math.inf  # when the latest query a callback asked for is due
    hint_pending: bool = False  # that query is not yet sent
    backstop: bool = False  # polled only in case its callback is lost (Backstop)
    resumed: bool = False  # created by an earlier run: its time here says nothing


@dataclass
class _Counts:
    """Where each item of the run stands, so that the numbers always add up to the total:
    settled (``SETTLED``: what this run made of it), queued (not started: waiting for its
    inputs, for a free slot, or for a backoff to end) and running (the rest: being sent,
    generating, polled or downloaded)."""

    settled: dict[str, str] = field(default_factory=dict)  # item id -> one of SETTLED
    tally: Counter[str] = field(default_factory=Counter)  # of settled's values
    unready: set[str] = field(default_factory=set)  # waiting for inputs not yet done

    def settle(self, item_id: str, status: Status) -> None:
        """Count ``item_id`` as settled with ``status``; an item settled again moves from
        its old count to the new one, never counted twice."""
        previous = self.settled.get(item_id)
        if previous is not None:
            self.tally[previous] -= 1
        name = _SETTLED_AS.get(status, "failed")
        self.settled[item_id] = name
        self.tally[name] += 1
        self.unready.discard(item_id)

    def as_dict(self, total: int, queued: int) -> dict[str, int]:
        """``done, failed, uncertain, blocked, running, queued``, adding up to ``total``;
        ``queued``: items ready or backing off (those waiting for inputs are added)."""
        counts = {name: self.tally[name] for name in SETTLED}
        waiting = queued + len(self.unready)
        running = total - sum(counts.values()) - waiting
        return {**counts, "running": running, "queued": waiting}


# What an item settled with counts as; any other status (failed) as failed.
_SETTLED_AS = {
    Status.DONE: "done",
    Status.UNCERTAIN: "uncertain",
    Status.SUBMITTING: "uncertain",  # its create's answer was never recorded
    Status.BLOCKED: "blocked",
}


def _receive(
    inbox: queue.SimpleQueue[list[events.Event]], timeout: float | None
) -> list[events.Event]:
    """Block until the next batch of events, or raise ``queue.Empty`` after ``timeout``."""
    return inbox.get(timeout=timeout)


@dataclass
class Scheduler:
    graph: Graph
    plan: Plan
    store: StateStore
    client: HiflyClient
    settings: RunSettings
    scope: set[str] | None = None
    on_progress: Callable[[dict[str, int], int], None] | None = None
    clock: Callable[[], float] = time.monotonic
    records: dict[str, Record] = field(default_factory=dict)
    credit_limit: CreditLimit | None = None  # run --max-credits
    callbacks: bool = False  # run --callbacks: tasks are queried when the service says so
    # How the loop waits for events. A seam for tests: they pass one that moves a fake
    # ``clock`` on by the timeout instead of sleeping, so simulated minutes take no time.
    receive: Callable[[queue.SimpleQueue[list[events.Event]], float | None], list[events.Event]] = (
        _receive
    )

    def __post_init__(self) -> None:
        self.events: queue.SimpleQueue[list[events.Event]] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.planner = PollPlanner(self.settings.poll_interval, self.settings.poll_max)
        self.backstop = Backstop(self.settings.poll_interval, self.settings.poll_max)
        self.limit = self.settings.concurrency
        self.creating: set[str] = set()  # create requests sent, answer not yet recorded
        self.generating: set[str] = set()  # tasks submitted and not yet seen ended
        self.jobs_out = 0
        self.no_new_submissions = False
        self.out_of_credits = False
        self.interrupted = self.terminated = False
        self.ready: deque[str] = deque()
        self.later: list[tuple[float, int, str]] = []  # (due, seq, item): backed-off items
        self.polls: list[tuple[float, int, str]] = []
        self.poll_seq: dict[str, int] = {}  # each task's current entry in ``polls``
        self.polling: set[str] = set()  # items with a query on its way
        self.recheck: set[str] = set()  # hinted while a query was on its way: ask again
        self.called_back: set[str] = set()  # tasks of this run a callback named
        self.ended: set[str] = set()  # task ids of this run seen ended
        self.unheard = 0  # tasks ended while no callback had come
        self.tasks: dict[str, _Task] = {}
        self.waiting: dict[str, set[str]] = {}
        self.dependents: dict[str, list[str]] = {i.id: [] for i in self.graph}
        self.backoff: dict[str, float] = {}
        self.quiet_until = 0.0  # no create before then: the service said 429, Retry-After
        self.tries: dict[str, int] = {}
        self.resends: dict[str, int] = {}  # free resends of the current attempt
        self.seq = itertools.count()
        self.counts = _Counts()
        self.total = 0

    @property
    def in_flight(self) -> int:
        """Creation tasks that count against the concurrency limit."""
        return len(self.creating) + len(self.generating)

    # Running ----------------------------------------------------------------

    def run(self) -> Outcome:
        """Carry the plan out; returns when nothing more can happen, or on Ctrl-C."""
        # At most one thread per creation task under way (for its download), and a few
        # for polls and creates; the pool starts small and grows only if calls are slow.
        self.pool = WorkerPool(self.settings.concurrency + 4)
        outputs = OutputFolder(self.settings.output_dir)
        outputs.remove_leftovers()
        self.ctx = jobs.JobContext(
            self.graph,
            self.client,
            self.store,
            outputs,
            self.events.put,
            self.stopping,
        )
        try:
            with _signals_as_events(self.interrupt):
                try:
                    self._start()
                    self._loop()
                except KeyboardInterrupt as stop:  # raised, not signalled (see interrupt)
                    self._on_interrupted(events.Interrupted("", isinstance(stop, Terminated)))
                if self.interrupted:
                    self._drain_creates()
        finally:
            self.stopping.set()
            self.pool.shutdown(wait=not self.interrupted)
        held = tuple(self.credit_limit.held) if self.credit_limit is not None else ()
        counts = self._report()
        log.debug("run ended: %s of %d items", _listed(counts), self.total)
        if self.callbacks or self.unheard:
            log.info("callbacks named %d task(s) of this run", len(self.called_back))
        return Outcome(counts, self.interrupted, self.out_of_credits, self.terminated, held)

    def interrupt(self, terminated: bool = False) -> None:
        """Stop as Ctrl-C does (SIGTERM: ``terminated``): nothing new is sent, and the
        answers of creates already sent are still recorded. Safe in a signal handler:
        it only puts an event on the loop's queue, which is reentrant."""
        self.events.put([events.Interrupted("", terminated)])

    def _loop(self) -> None:
        while not self.interrupted:
            self._dispatch()
            if not self._busy():
                return
            try:
                event = self.receive(self.events, self._wait())
            except queue.Empty:
                continue
            self._handle(event)
            while True:  # take everything already there before dispatching again
                try:
                    self._handle(self.events.get_nowait())
                except queue.Empty:
                    break

    def _busy(self) -> bool:
        waiting_on_service = self.ready or self.later
        polls_due = self._next_poll() is not None
        return bool(
            self.jobs_out or polls_due or (waiting_on_service and not self.no_new_submissions)
        )

    def _next_poll(self) -> float | None:
        """When the earliest poll still wanted is due. Entries a callback moved earlier, or
        whose task has ended, are dropped: they would keep the run waiting for nothing."""
        while self.polls and self.poll_seq.get(self.polls[0][2]) != self.polls[0][1]:
            heapq.heappop(self.polls)
        return self.polls[0][0] if self.polls else None

    def _wait(self) -> float | None:
        now = self.clock()
        dues = (self._next_poll(), self.later[0][0] if self.later else None)
        waits = [due - now for due in dues if due is not None]
        if (tend := self.pool.tend()) is not None:
            waits.append(tend)
        return max(0.0, min(waits)) if waits else None

    def _drain_creates(self) -> None:
        """Ctrl-C: send nothing new, but let creates already sent record their task ids."""
        self.no_new_submissions = True
        self.stopping.set()
        deadline = self.clock() + CREATE_GRACE
        while self.creating and self.jobs_out and self.clock() < deadline:
            try:  # a Ctrl-C pressed again is one more Interrupted event: nothing changes
                self._handle(self.receive(self.events, 0.2))
            except queue.Empty:
                continue

    # Starting -----------------------------------------------------------------

    def _start(self) -> None:
        fresh = []
        for step in self.plan.steps:
            item = step.item
            if self.scope is not None and item.id not in self.scope:
                continue
            record = self.records.get(item.id) or new_record(item)
            if item.id not in self.records:
                fresh.append(record)
            self.records[item.id] = record
            self.total += 1
        self.store.put_many(fresh)
        for step in self.plan.steps:
            if self.scope is None or step.item.id in self.scope:
                self._begin(step.item, step.action)
        log.debug("run started: %d items", self.total)
        self._report()

    def _begin(self, item: Item, action: Action) -> None:
        record = self.records[item.id]
        for dep in item.deps:
            self.dependents[dep].append(item.id)
        if action is Action.SKIP:
            self.counts.settle(item.id, Status.DONE)  # the plan found its output whole
            return
        if action is Action.MOVE:  # stays done: its users need not wait
            self._start_job(jobs.move_output, item, record)
            return
        if action is Action.DOWNLOAD and record.status is Status.DONE:  # its output was lost
            self._start_job(jobs.refetch, item, record)
            return
        if record.status is Status.DONE:  # to be made again: its users must wait for it
            replaces = (*record.replaces, record.task_id) if record.task_id else record.replaces
            made = replace(record, status=Status.PENDING, replaces=replaces)
            self.records[item.id] = record = made
        if action is Action.RESUME:
            self.generating.add(item.id)
            self._track(item, record, resumed=True)
        elif action is Action.UNCERTAIN:
            self._settle(item.id, record)
        elif action is Action.BLOCKED:
            self._settle(item.id, self._block(record))
        elif action is Action.EDIT:
            self._start_job(jobs.edit_voice, item, record)
        elif action in (Action.DOWNLOAD, Action.RETRY) and jobs.work_exists(record):
            # Made, but saving its result failed: query the task again, never re-create it.
            self.tasks[item.id] = _Task(item.kind.value, self.clock(), 0.0, False, learn=False)
            self._poll_at(item.id, self.clock())
        else:
            unmet = {d for d in item.deps if self.records[d].status is not Status.DONE}
            self.waiting[item.id] = unmet
            if not unmet:
                self.ready.append(item.id)
            else:
                self.counts.unready.add(item.id)

    # Dispatching ----------------------------------------------------------------

    def _dispatch(self) -> None:
        now = self.clock()
        while self.later and self.later[0][0] <= now:
            self.ready.appendleft(heapq.heappop(self.later)[2])
        while self.polls and self.polls[0][0] <= now:
            _, seq, item_id = heapq.heappop(self.polls)
            if self.poll_seq.get(item_id) != seq:
                continue  # moved earlier by a callback, or its task has ended
            self.tasks[item_id].hint_pending = False
            self.polling.add(item_id)
            self._start_job(jobs.poll, self.graph[item_id], self.records[item_id])
        while self.ready and not self.no_new_submissions:
            item = self.graph[self.ready[0]]
            is_create = item.kind in CREATE_KINDS
            if is_create and (self.in_flight >= self.limit or now < self.quiet_until):
                break
            self.ready.popleft()
            if not self._admitted(item):
                continue
            if is_create:
                self.creating.add(item.id)
            deps = {d: self.records[d] for d in item.deps}
            self._start_job(jobs.submit, item, self.records[item.id], deps)
        self._report()

    def _admitted(self, item: Item) -> bool:
        """Whether ``--max-credits`` lets this item's create go; one held back stays
        pending, for the next run (SPEC §4)."""
        if self.credit_limit is None or item.kind.endpoint not in PAID_ENDPOINTS:
            return True
        return self.credit_limit.admit(item.id)

    def _start_job(self, job: Callable[..., None], item: Item, *args: object) -> None:
        self.jobs_out += 1
        self.pool.submit(job, self.ctx, item, *args)

    # Events -----------------------------------------------------------------------

    def _handle(self, batch: list[events.Event]) -> None:
        for event in batch:
            _HANDLERS[type(event)](self, event)

    def _on_job_ended(self, event: events.JobEnded) -> None:
        self.jobs_out -= 1
        self.creating.discard(event.item_id)  # also a create never sent (interrupted)

    def _on_submitted(self, event: events.Submitted) -> None:
        self.creating.discard(event.item_id)
        self.generating.add(event.item_id)
        self.records[event.item_id] = event.record
        self.backoff.pop(event.item_id, None)
        if self.limit < self.settings.concurrency:
            self.limit += 1  # the service took one: grow back toward the setting
        self._track(self.graph[event.item_id], event.record)

    def hint(self, task_id: str) -> None:
        """A callback named ``task_id``: query it now if it is a task of this run. Safe from
        any thread (it only puts an event on the loop's queue)."""
        self.events.put([events.Hinted("", task_id)])

    def _track(self, item: Item, record: Record, resumed: bool = False) -> None:
        kind = item.kind.value
        # A callback says when; the backstop finds one lost (SPEC §5).
        backstop = self.callbacks and (kind in CALLED_BACK or self.backstop.has_heard(kind))
        if backstop:
            first, learned = self.backstop.first_poll(kind), False
            if resumed:  # its callback may have come while no run was listening
                first = self.settings.poll_interval
        else:
            first, learned = self.planner.first_poll(kind)
        created = self.clock()
        task = _Task(kind, created, first, learned, polled_at=first, backstop=backstop)
        task.resumed = resumed
        task.learn = not backstop  # (a task found by its callback says nothing of polls)
        self.tasks[item.id] = task
        self._poll_at(item.id, created + first)

    def _poll_at(self, item_id: str, due: float) -> None:
        seq = next(self.seq)
        self.poll_seq[item_id] = seq
        heapq.heappush(self.polls, (due, seq, item_id))

    def _on_hinted(self, event: events.Hinted) -> None:
        found = (i for i in self.tasks if self.records[i].task_id == event.task_id)
        item_id = next(found, None)
        if item_id is None:
            if event.task_id in self.ended:  # late, but callbacks do reach the run
                self.called_back.add(event.task_id)
            return  # not a task this run waits for (another campaign's, or a forgery)
        self.called_back.add(event.task_id)
        log.debug("callback for task %s (%s)", event.task_id, item_id)
        task, now = self.tasks[item_id], self.clock()
        if task.hinted is None:
            task.hinted = now - task.created
        if task.hint_pending:
            return  # the query a callback asked for is not sent yet
        # Callbacks are anyone's to send: a task is queried for them at most once per
        # poll_interval, so a flood of forgeries costs no more than the fastest polling.
        task.hint_query = max(now, task.hint_query + self.settings.poll_interval)
        task.hint_pending = True
        if item_id in self.polling:
            self.recheck.add(item_id)  # that query may have been sent just before the end
        else:
            self._poll_at(item_id, task.hint_query)

    def _on_still_running(self, event: events.StillRunning) -> None:
        self.polling.discard(event.item_id)
        task = self.tasks[event.item_id]
        if self.clock() - task.created > self.settings.task_timeout:
            self._timed_out(event.item_id)
            return
        if event.item_id in self.recheck:  # a callback came while this query was out
            self.recheck.discard(event.item_id)
            self._poll_at(event.item_id, max(self.clock(), task.hint_query))
            return
        task.hinted = None  # its callback's query found it running: no measure of its end
        planned = task.created + task.polled_at
        if planned > self.clock():
            # A callback came before the task's end (a forgery, or a service that said so
            # early): the poll planned for it still stands, neither earlier nor later.
            self._poll_at(event.item_id, planned)
            return
        task.last_running = task.polled_at
        nxt = self.planner.next_poll(task.kind, task.polled_at, task.previous_gap)
        if task.backstop:
            nxt = task.polled_at + self.settings.poll_max
        task.previous_gap, task.polled_at = nxt - task.polled_at, nxt
        self._poll_at(event.item_id, task.created + nxt)

    def _on_poll_failed(self, event: events.PollFailed) -> None:
        self.polling.discard(event.item_id)
        self._poll_at(event.item_id, self.clock() + min(self.settings.poll_max, RETRY_DELAY))

    def _on_task_ended(self, event: events.TaskEnded) -> None:
        self.generating.discard(event.item_id)
        self._forget_polls(event.item_id)
        task = self.tasks.pop(event.item_id)
        self.ended.add(self.records[event.item_id].task_id or "")
        if task.hinted is not None:  # the query its callback caused found it ended
            if not task.resumed:
                self._heard(task.kind, task.hinted)
        elif self.callbacks and not self.called_back and task.kind in CALLED_BACK:
            self._unheard()
        if task.learn and task.hinted is None:
            self.planner.observe(
                task.kind,
                learned_first_poll=task.learned,
                done_at_first_poll=task.previous_gap is None,
                finished_within=(task.last_running, task.polled_at),
            )

    def _heard(self, kind: str, after: float) -> None:
        """Learn from a callback that came ``after`` seconds since its task's create, and
        bring the backstops of tasks not yet polled forward to the new time (the first
        callbacks of a run move them from ``poll_max`` to near the tasks' finish)."""
        self.backstop.heard(kind, after)
        first = self.backstop.first_poll(kind)
        for item_id, task in self.tasks.items():
            waiting = task.previous_gap is None and item_id not in self.polling
            pending = waiting and task.backstop and task.hinted is None
            if task.kind == kind and pending and task.polled_at > first:
                task.polled_at = first
                self._poll_at(item_id, task.created + first)

    def _unheard(self) -> None:
        """One more task ended with no callback yet in the run. After ``UNHEARD``, say so
        and poll as without callbacks (learning from polls), not at ``poll_max``; a
        callback that comes later still makes its task be queried at once."""
        self.unheard += 1
        if self.unheard == UNHEARD:
            self.callbacks = False
            log.warning(
                "--callbacks: %d tasks have ended and no callback has come; check that the "
                "account's callback URL reaches this run's --callbacks address. Polling "
                "as without --callbacks from now on",
                UNHEARD,
            )

    def _forget_polls(self, item_id: str) -> None:
        self.polling.discard(item_id)
        self.recheck.discard(item_id)
        self.poll_seq.pop(item_id, None)

    def _timed_out(self, item_id: str) -> None:
        self._forget_polls(item_id)
        self.tasks.pop(item_id)
        self.generating.discard(item_id)
        minutes = self.settings.task_timeout / 60
        record = self.records[item_id]
        record = self.store.update(
            record,
            status=Status.FAILED,
            error_message=f"timed out: not finished after {minutes:g} min (task_timeout); "
            "a rerun checks on the task before creating anything",
            work_exists=True,
        )
        self._finished(self.graph[item_id], record, transient=False)

    def _on_deferred(self, event: events.Deferred) -> None:
        self.creating.discard(event.item_id)
        self.records[event.item_id] = event.record
        if event.code == INSUFFICIENT_CREDITS:
            self.out_of_credits = self.no_new_submissions = True
            self.ready.appendleft(event.item_id)
            return
        if event.code == events.TOO_MANY_REQUESTS:
            # Every create waits as long as asked, at most poll_max (SPEC §5); no try used.
            wait = min(event.wait, self.settings.poll_max)
            self.quiet_until = max(self.quiet_until, self.clock() + wait)
            heapq.heappush(self.later, (self.quiet_until, next(self.seq), event.item_id))
            return
        self.limit = max(1, self.in_flight)  # the service is full: wait for a slot to free
        delay = self.backoff.get(event.item_id, BACKOFF_START / 2) * 2
        self.backoff[event.item_id] = min(BACKOFF_MAX, delay)
        heapq.heappush(self.later, (self.clock() + delay, next(self.seq), event.item_id))

    def _on_finished(self, event: events.Finished) -> None:
        self.creating.discard(event.item_id)  # a create that failed or was lost
        item = self.graph[event.item_id]
        self._finished(item, event.record, event.transient, free=event.not_created)

    def _finished(self, item: Item, record: Record, transient: bool, free: bool = False) -> None:
        self.records[item.id] = record
        if record.status is Status.FAILED and transient:
            if free and self._resend(item, record):
                return
            if self._retry(item, record):
                if record.task_id is None:  # waits to be sent again: pending, not failed
                    self.records[item.id] = self.store.update(record, status=Status.PENDING)
                return
        self._settle(item.id, record)

    def _resend(self, item: Item, record: Record) -> bool:
        """A create the service provably did not make (not sent, or answered 5xx) is sent
        again after a backoff, FREE_RESENDS times per attempt, without using one up; it
        waits pending."""
        resends = self.resends[item.id] = self.resends.get(item.id, 0) + 1
        if resends > FREE_RESENDS:
            self.resends[item.id] = 0
            return False
        due = self.clock() + RETRY_DELAY * 2 ** (resends - 1)
        heapq.heappush(self.later, (due, next(self.seq), item.id))
        waiting = self.store.update(record, status=Status.PENDING, attempts=record.attempts - 1)
        self.records[item.id] = waiting
        return True

    def _retry(self, item: Item, record: Record) -> bool:
        """Another try after a transient failure, if ``max_attempts`` allows; never a resubmit
        of a task that exists (its output is fetched again instead)."""
        tries = self.tries[item.id] = self.tries.get(item.id, 1) + 1
        if tries > self.settings.max_attempts:
            return False
        due = self.clock() + RETRY_DELAY * 2 ** (tries - 2)
        if record.task_id is not None and item.kind in CREATE_KINDS:
            self.tasks[item.id] = _Task(item.kind.value, due, 0.0, False, learn=False)
            self._poll_at(item.id, due)
        else:
            heapq.heappush(self.later, (due, next(self.seq), item.id))
        return True

    def _on_interrupted(self, event: events.Interrupted) -> None:
        if not self.interrupted:  # the first signal says how the run was stopped
            self.interrupted, self.terminated = True, event.terminated

    def _on_fatal(self, event: events.Fatal) -> None:
        raise event.error

    # Settling -------------------------------------------------------------------------

    def _settle(self, item_id: str, record: Record) -> None:
        """An item reached its status for this run: count it and wake or block its users."""
        self.records[item_id] = record
        self.counts.settle(item_id, record.status)
        log.debug("%s: %s%s", item_id, record.status.value, _why(record))
        if record.status is Status.DONE:
            for user in self.dependents[item_id]:
                unmet = self.waiting.get(user)
                if unmet is not None and item_id in unmet:
                    unmet.discard(item_id)
                    if not unmet:
                        self.ready.append(user)
                        self.counts.unready.discard(user)
        else:
            for user in self.dependents[item_id]:
                if user in self.waiting and self.records[user].status is not Status.BLOCKED:
                    self.waiting.pop(user)
                    self._settle(user, self._block(self.records[user]))

    def _block(self, record: Record) -> Record:
        """Blocked, for the manifest as it is now (what it was made for before stays in
        the lock file, and counts again if the manifest goes back to it)."""
        item = self.graph.by_id[record.item]
        return self.store.update(record, status=Status.BLOCKED, fingerprint=item.fingerprint)

    def _report(self) -> dict[str, int]:
        """The counts now (see ``_Counts``), given to ``on_progress``."""
        held = len(self.credit_limit.held) if self.credit_limit is not None else 0
        counts = self.counts.as_dict(self.total, len(self.ready) + len(self.later) + held)
        if self.on_progress is not None:
            self.on_progress(counts, self.total)
        return counts


def _why(record: Record) -> str:
    """What an item's record says of its failure, for the log: ``, code 1002: …``."""
    if record.status is Status.DONE or not (record.error_code or record.error_message):
        return ""
    code = f"code {record.error_code}: " if record.error_code else ""
    return f", {code}{record.error_message or ''}"


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


_HANDLERS: dict[type, Callable[[Scheduler, events.Event], None]] = {
    events.JobEnded: Scheduler._on_job_ended,  # type: ignore[dict-item]
    events.Submitted: Scheduler._on_submitted,  # type: ignore[dict-item]
    events.StillRunning: Scheduler._on_still_running,  # type: ignore[dict-item]
    events.PollFailed: Scheduler._on_poll_failed,  # type: ignore[dict-item]
    events.Hinted: Scheduler._on_hinted,  # type: ignore[dict-item]
    events.TaskEnded: Scheduler._on_task_ended,  # type: ignore[dict-item]
    events.Deferred: Scheduler._on_deferred,  # type: ignore[dict-item]
    events.Finished: Scheduler._on_finished,  # type: ignore[dict-item]
    events.Interrupted: Scheduler._on_interrupted,  # type: ignore[dict-item]
    events.Fatal: Scheduler._on_fatal,  # type: ignore[dict-item]
}


@contextlib.contextmanager
def _signals_as_events(interrupt: Callable[[bool], None]) -> Iterator[None]:
    """While the loop runs, Ctrl-C and SIGTERM reach it as events, handled between two
    others. Raised as exceptions they could land in the middle of a batch of events,
    losing those after it, or inside a finaliser, where Python prints and drops them.
    A signal the process was started to ignore (``nohup``, ``&``) stays ignored, and
    off the main thread (where handlers cannot be set) signals are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        interrupt(signum == signal.SIGTERM)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
