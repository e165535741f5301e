"""A campaign as a library call: load a manifest, plan it, run it, report on it.

Everything the ``plan``, ``run``, ``status`` and ``report`` commands do beyond
parsing options and printing happens here, so a Python user gets the same
guards as the command line (the state's lock, the sandbox/real separation, the
settling of an interrupted run)::

    from hifly_batch import Campaign

    campaign = Campaign.load("campaign.yaml", sandbox=True)
    print(campaign.plan().totals())
    result = campaign.run(on_progress=print)
    print(result.exit_status, result.report)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from hifly_batch.api.client import HiflyClient
from hifly_batch.api.connect import TOKEN_VARIABLE, api_client, unreachable
from hifly_batch.api.errors import HttpStatusError, TransportError
from hifly_batch.core.estimate import Estimate, estimate
from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, Plan, make_plan
from hifly_batch.core.scope import matching, select
from hifly_batch.errors import ConfigError, ExitStatus, HiflyBatchError, RunDeclined, UsageError
from hifly_batch.files import FileWriteError
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.media import audio_seconds
from hifly_batch.manifest.model import Manifest
from hifly_batch.reports import csv_report, review_page
from hifly_batch.runner import lockfile, run_log, spend
from hifly_batch.runner.errors import RehearsalOnly, StateError
from hifly_batch.runner.lock import campaign_lock, run_lock
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.receiver import CallbackReceiver, sandbox_callback_url
from hifly_batch.runner.scheduler import Outcome, RunSettings, Scheduler
from hifly_batch.runner.spend import CreditLimit
from hifly_batch.runner.state import Record, StateStore, open_state, prior_states
from hifly_batch.runner.state_postgres import is_database, shown

STATE_FOLDER = ".hifly"
REHEARSAL = ".sandbox"  # marks the state file and the outputs folder of rehearsals
log = logging.getLogger(__name__)
LOCK_SAVE_SECONDS = 5.0  # during a run; it is also written at its end
LOCK_SAVE_SHARE = 20  # ... and never more often than every 20 times one write's time

ProgressCallback = Callable[[dict[str, int], int], None]
"""Called as items change: the counts of done, failed, uncertain, blocked, running and
queued items (they add up to the total), and the total."""


@dataclass(frozen=True)
class Quote:
    """What a run is about to spend, shown (and, on a terminal, asked about) before it
    sends anything (SPEC §4 "Spending money")."""

    plan: Plan
    estimate: Estimate  # of the paid creates in the run's scope
    balance: int | None  # the account's credits, None when they could not be read
    sandbox: bool
    api: str  # "the sandbox", or the real API's base URL


@dataclass(frozen=True)
class Spending:
    """What a run that sent paid creates spent, as far as the balance tells."""

    estimate: Estimate
    before: int | None  # the balance as the run began
    after: int | None  # ... and as it ended
    limit: float | None  # --max-credits
    committed: float  # the estimated credits of the paid creates it sent

    @property
    def spent(self) -> int | None:
        if self.before is None or self.after is None:
            return None
        return self.before - self.after


@dataclass(frozen=True)
class RunResult:
    """What :meth:`Campaign.run` ended with."""

    outcome: Outcome
    records: list[Record]  # one per item of the manifest, in dependency order
    scope: set[str] | None  # the item ids the run could touch; None: all
    report: Path  # report.csv
    review: Path  # report.html beside it
    spending: Spending | None = None  # None: the run sent no paid create
    log: Path | None = None  # the run's log (.hifly/logs/); None: it could not be written
    idle: bool = False  # nothing in scope needed doing: every item was done and unchanged

    @property
    def exit_status(self) -> ExitStatus:
        """SPEC §4: 0 every item in scope done, 1 some not, 130 interrupted, 143 stopped
        by SIGTERM."""
        if self.outcome.terminated:
            return ExitStatus.TERMINATED
        if self.outcome.interrupted:
            return ExitStatus.INTERRUPTED
        if self.outcome.held:  # work asked for (made again, perhaps) was not sent
            return ExitStatus.ITEMS_FAILED
        in_scope = (r for r in self.records if self.scope is None or r.item in self.scope)
        finished = all(r.status is Status.DONE for r in in_scope)
        return ExitStatus.OK if finished else ExitStatus.ITEMS_FAILED


@dataclass(frozen=True)
class Recorded:
    """What is known of the campaign's items: the local state read with the lock file."""

    records: dict[str, Record]  # by item id, the manifest's and any others recorded
    from_lock: frozenset[str]  # ids whose record comes from the lock file, not the state
    lock_file: Path
    sandbox: bool = False  # the records of rehearsals: their outputs are the rehearsal's


@dataclass(frozen=True)
class Campaign:
    """A validated manifest with its item graph and the state that records its runs."""

    manifest: Manifest
    graph: Graph
    state_path: Path
    sandbox: bool = False
    state_url: str | None = None  # a PostgreSQL database holding the state instead

    @classmethod
    def load(
        cls, path: Path | str, *, state: Path | str | None = None, sandbox: bool = False
    ) -> Campaign:
        """Validate the manifest at ``path``; raises ``ManifestInvalid`` with every fault.

        The state defaults to ``.hifly/<name>.state.db`` beside the manifest. A
        sandbox rehearsal keeps its own (``<name>.sandbox.state.db``): the
        avatars and voices it made exist only in the sandbox, so a real run
        must not take them as done. A ``postgresql://`` state is a database that
        keeps many campaigns, each rehearsal apart from its real runs (SPEC §5); but
        a ``sandbox`` rehearsal, whose sandbox world is this folder's own, keeps its
        state beside the manifest, so that two folders' rehearsals never meet there.
        """
        loaded = load_campaign(Path(path))
        manifest = loaded.manifest
        default = default_state(manifest, sandbox=sandbox)
        if state is not None and is_database(str(state)):
            if sandbox:
                log.warning(
                    "a --sandbox rehearsal keeps its state in %s, beside its sandbox world, "
                    "not in the database", default,
                )  # fmt: skip
                return cls(manifest, build_graph(loaded), default, sandbox)
            return cls(manifest, build_graph(loaded), default, sandbox, str(state))
        state_path = Path(state) if state else default
        return cls(manifest, build_graph(loaded), state_path, sandbox)

    @property
    def output_dir(self) -> Path:
        """The outputs folder of this campaign's runs (of its rehearsals with ``sandbox``)."""
        return self.outputs(sandbox=self.sandbox)

    def outputs(self, *, sandbox: bool) -> Path:
        """Where runs write outputs and reports: ``settings.output_dir``, or for rehearsals
        ``<output_dir>.sandbox`` beside it, so that a placeholder never sits where a real
        video goes (SPEC §4)."""
        real = self.manifest.settings.output_dir
        return real.with_name(real.name + REHEARSAL) if sandbox else real

    @property
    def sandbox_dir(self) -> Path:
        """The sandbox world of sandbox runs, kept beside the manifest."""
        return self.manifest.root / STATE_FOLDER / "sandbox"

    def lock_path(self, *, sandbox: bool) -> Path:
        """The lock file (SPEC §5): ``<stem>.lock`` beside the manifest, committed to git;
        ``<stem>.sandbox.lock`` for sandbox runs, whose work exists only in that sandbox."""
        return lockfile.lock_path(self.manifest.path, sandbox=sandbox)

    # Reading ------------------------------------------------------------------

    def plan(self, *, resubmit_uncertain: bool = False, recreate: Sequence[str] = ()) -> Plan:
        """What a run would do with each item, given the state and the lock file; no
        network, writes nothing. ``recreate``: item-id globs of done items to make
        again (``NoMatch`` if none match)."""
        return self._plan(self.recorded(planning=True), resubmit_uncertain, recreate)

    def estimate(self, plan: Plan, *, api: str, scope: set[str] | None = None) -> Estimate:
        """The credits ``plan``'s paid creates (those in ``scope``) are expected to take on
        ``api`` (``sandbox`` or the real API's base URL): the table's figures, or what runs
        from this folder measured on that API (SPEC §4)."""
        measured = spend.read_measured(self.manifest.root / STATE_FOLDER, api, self.manifest.name)
        return estimate(
            self.graph,
            plan,
            plan.prior,
            measured,
            media_seconds=functools.lru_cache(audio_seconds),  # (one file, many rows)
            scope=scope,
        )

    def _plan(
        self, recorded: Recorded, resubmit_uncertain: bool, recreate: Sequence[str] | str
    ) -> Plan:
        """The plan; an output this machine has for a record it did not make (from the
        lock file) must match that record's SHA-256, or it is downloaded."""
        globs = (recreate,) if isinstance(recreate, str) else tuple(recreate)
        return make_plan(
            self.graph,
            prior_states(recorded.records, verify=recorded.from_lock),
            resubmit_uncertain=resubmit_uncertain,
            recreate=matching(self.graph, globs, "--recreate") if globs else set(),
            output_whole=OutputFolder(self.outputs(sandbox=recorded.sandbox)).whole,
        )

    def recorded(self, *, planning: bool = False) -> Recorded:
        """The state's records combined with the lock file's (``StateError`` when either
        cannot be read). The lock file read is the sandbox one with ``--sandbox`` or
        when the state was made on a sandbox. ``planning``: for what a run would do,
        which leaves out the record of an in-process sandbox world that is gone."""
        local: dict[str, Record] = {}
        sandbox = self.sandbox
        if self._has_state():
            with self._open_reading() as store:
                store.check_campaign(self.manifest.name)
                local = self._current(store.records())
                sandbox = sandbox or store.claimed().get("api") == "sandbox"
        world_lost = planning and self._world_lost()
        return self._combine(local, self.lock_path(sandbox=sandbox), world_lost, sandbox=sandbox)

    def _has_state(self) -> bool:
        """Whether there may be a state to read (a database always may; so does a path
        that cannot be looked at, for opening it to say why)."""
        try:
            return self.state_url is not None or self.state_path.exists()
        except OSError:
            return True

    def _open_reading(self) -> StateStore:
        """The store to read (``--sandbox``: the rehearsal's). A database keeps a campaign's
        rehearsals apart from its real runs; without ``--sandbox`` it reads the real runs'
        records, or the rehearsal's where there are none, as a state file that a
        rehearsal made is read."""
        store = self._open_state(readonly=True, sandbox=self.sandbox)
        if self.sandbox or self.state_url is None or store.claimed():
            return store
        rehearsal = self._open_state(readonly=True, sandbox=True)
        chosen, other = (rehearsal, store) if rehearsal.claimed() else (store, rehearsal)
        other.close()
        return chosen

    def _open_state(self, *, readonly: bool = False, sandbox: bool = False) -> StateStore:
        """The campaign's state store: the database's records of this campaign on this
        kind of API (with its journal beside the manifest), or the state file."""
        api = "sandbox" if sandbox else "service"
        kind = ".sandbox" if sandbox else ""
        journal = self.manifest.root / STATE_FOLDER / f"{self.manifest.name}{kind}.journal"
        where = self.state_url or self.state_path
        return open_state(
            where, readonly=readonly, campaign=self.manifest.name, api=api, journal=journal
        )

    def _combine(
        self,
        local: Mapping[str, Record],
        lock_file: Path,
        world_lost: bool = False,
        *,
        sandbox: bool,
    ) -> Recorded:
        locked = self._locked(lock_file, world_lost)
        records, from_lock = lockfile.combine(local, locked, self._fingerprints())
        return Recorded(records, from_lock, lock_file, sandbox)

    def _locked(self, lock_file: Path, world_lost: bool) -> list[Record]:
        """The lock file's records; none when it is the record of an in-process sandbox
        world that is gone (a copy of the folder without ``.hifly/``): that world's tasks
        are gone with it, and a rehearsal costs nothing to make again."""
        if world_lost:
            return []
        lines = lockfile.read(lock_file, campaign=self.manifest.name)
        return [self._current_record(line) for line in lines]

    def _current(self, records: Mapping[str, Record]) -> dict[str, Record]:
        """``records`` (by item id) as :meth:`_current_record` reads each."""
        return {item: self._current_record(record) for item, record in records.items()}

    def _current_record(self, record: Record) -> Record:
        """``record``, if it holds work made by version 1.0, under the fingerprint its
        item has now: its texts were sent as rendered then, not yet normalized (SPEC §3),
        and they say the same words, so nothing is made again for the change."""
        item = self.graph.by_id.get(record.item)
        if item is not None and record.fingerprint == item.legacy_fingerprint:
            return replace(record, fingerprint=item.fingerprint)
        return record

    def _world_lost(self) -> bool:
        return self.sandbox and not self.sandbox_dir.exists()

    def records(self, recorded: Recorded | None = None) -> list[Record]:
        """Each item's record as the state and the lock file have it (``recorded``,
        default read now), in dependency order (``StateError`` when there is neither
        yet, or one cannot be read)."""
        recorded = recorded or self.recorded()
        if not recorded.records and (self.state_url is not None or not self.state_path.exists()):
            where = shown(self.state_url) if self.state_url else self.state_path
            missing = f"{where}: no state yet (and no {recorded.lock_file.name})"
            rehearsal = self.rehearsal_record(recorded)
            if rehearsal is not None:
                raise RehearsalOnly(
                    f"{missing}: only a rehearsal has run for this manifest, recorded in "
                    f"{rehearsal.name}; add --sandbox to see it"
                )
            raise StateError(f"{missing}: nothing has run for this manifest")
        return csv_report.report_records(self.graph, recorded.records)

    def rehearsal_record(self, recorded: Recorded | None = None) -> Path | None:
        """When nothing but rehearsals has run for a campaign loaded without ``sandbox``:
        the rehearsals' state file, else their lock file; None otherwise. (A command
        without ``--sandbox`` then says so and names the flag, SPEC §4.)"""
        if self.sandbox or (recorded or self.recorded()).records:
            return None
        found = (default_state(self.manifest, sandbox=True), self.lock_path(sandbox=True))
        return next((path for path in found if path.exists()), None)

    def write_reports(
        self,
        records: list[Record] | None = None,
        path: Path | None = None,
        *,
        sandbox: bool | None = None,
        run_started: float | None = None,
    ) -> tuple[Path, Path]:
        """report.csv (at ``path``, default in the outputs folder) and report.html beside
        it; returns both paths. ``records`` default to what the state has; ``sandbox``
        (whether they are a rehearsal's, so which outputs folder) to what it says;
        ``run_started`` (epoch seconds): when the run writing them began, for the page to
        show its span."""
        if records is None:
            recorded = self.recorded()
            records, sandbox = self.records(recorded), recorded.sandbox
        output_dir = self.outputs(sandbox=self.sandbox if sandbox is None else sandbox)
        csv_path = path or output_dir / "report.csv"
        csv_report.write(records, self.graph.by_id, csv_path)
        page = review_page.review_path(csv_path)
        review_page.write(
            records,
            self.graph.by_id,
            page,
            output_dir=output_dir,
            title=self.manifest.name,
            run_started=None if run_started is None else _local_time(run_started),
            skipped=self.graph.skipped,
        )
        return csv_path, page

    # Running ------------------------------------------------------------------

    def run(
        self,
        *,
        only: Sequence[str] | str = (),
        retry_failed: bool = False,
        concurrency: int | None = None,
        resubmit_uncertain: bool = False,
        recreate: Sequence[str] | str = (),
        base_url: str | None = None,
        env: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
        max_credits: float | None = None,
        before_paying: Callable[[Quote], bool] | None = None,
        callbacks: tuple[str, int] | None = None,
    ) -> RunResult:
        """Carry the plan out against the API, then write the reports.

        Holds the state's lock for the whole run (``StateLocked`` if another
        run has it); refuses a state made on the other kind of API
        (``StateError``); items an interrupted run left mid-create become
        uncertain. ``only`` (item-id globs) and ``retry_failed`` narrow what
        the run touches (``NoMatch`` when ``only`` matches nothing); ``recreate``
        (item-id globs) makes matching done items again, as Terraform's ``-replace``.
        The token and base URL come from ``env`` (default ``os.environ``): ``HIFLY_TOKEN``,
        ``HIFLY_BASE_URL``. A Ctrl-C during the run is not raised: the result
        says ``interrupted``.

        A run that will send paid creates first reads the balance and calls
        ``before_paying`` with a :class:`Quote`; when it answers False nothing is sent
        and ``RunDeclined`` is raised. ``max_credits``: no paid create is sent once the
        estimated credits of those sent would pass it; the items held back stay pending.
        ``callbacks``: (host, port) to listen on for the service's task callbacks while
        the run lasts, bound before anything is sent or asked (``ConfigError`` when it
        cannot be); each is a hint to query its task at once. A sandbox run's own sandbox
        then sends them there (``UsageError`` for an address it cannot call back to).
        """
        started = time.time()  # (for the review page's run span)
        env = os.environ if env is None else env
        only = (only,) if isinstance(only, str) else tuple(only)
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"concurrency {concurrency}: must be 1 or more")
        sandbox_dir = self.sandbox_dir if self.sandbox else None
        call_back = sandbox_callback_url(callbacks) if self.sandbox and callbacks else None
        world_lost = self._world_lost()
        folder, token = self.manifest.root / STATE_FOLDER, env.get(TOKEN_VARIABLE, "")
        with (
            run_log.recording(folder, self.manifest.name, token) as log_file,
            run_lock(self.state_path) if self.state_url is None else contextlib.nullcontext(),
            _receiving(callbacks) as receiver,
            api_client(
                env, base_url=base_url, sandbox_dir=sandbox_dir, callback_url=call_back
            ) as client,
        ):
            sandbox = self.sandbox or _is_sandbox(client)
            log.debug("the API at %s%s", client.transport.base_url, " (a sandbox)" * sandbox)
            lock_file = self.lock_path(sandbox=sandbox)
            state_folder = self.manifest.root / STATE_FOLDER
            with (
                self._open_state(sandbox=sandbox) as store,
                store.run_lock(),  # (first: a database's refusal names the holder's host)
                campaign_lock(lock_file, state_folder),
            ):
                store.claim("sandbox" if sandbox else "service", self.manifest.name)
                before = self._current(store.settle_interrupted())
                recorded = self._combine(before, lock_file, world_lost, sandbox=sandbox)
                records = recorded.records
                plan = self._plan(recorded, resubmit_uncertain, recreate)
                statuses = {item: r.status for item, r in records.items()}
                scope = select(self.graph, plan, statuses, only=only, retry_failed=retry_failed)
                # (a sandbox known only by its answers' header is keyed by its address,
                # as `plan`, which sends nothing, knows it)
                api = "sandbox" if self.sandbox else client.transport.base_url
                quote = self._quote(client, plan, scope, sandbox, api)
                if quote is not None and before_paying is not None and not before_paying(quote):
                    raise RunDeclined()
                limit = (
                    CreditLimit(max_credits, quote.estimate.items if quote else {})
                    if max_credits is not None
                    else None
                )
                runner = Scheduler(
                    self.graph,
                    plan,
                    store,
                    client,
                    RunSettings.of(
                        replace(self.manifest.settings, output_dir=self.outputs(sandbox=sandbox)),
                        concurrency=concurrency,
                    ),
                    scope=scope,
                    on_progress=on_progress,
                    records=dict(records),
                    credit_limit=limit,
                    callbacks=callbacks is not None,
                )
                save = functools.partial(self._save_lock, store, before, lock_file, world_lost)
                if receiver is not None:
                    receiver.pass_to(runner.hint)
                outcome, known = self._carry_out(runner, store, save, scope, started, sandbox)
            spending = self._spent(client, quote, limit, api, before, known)
            final = csv_report.report_records(self.graph, known, scope)
            report, review = self.write_reports(final, run_started=started, sandbox=sandbox)
        idle = not outcome.interrupted and _all_skipped(plan, scope)
        return RunResult(outcome, final, scope, report, review, spending, log_file, idle)

    def _quote(
        self, client: HiflyClient, plan: Plan, scope: set[str] | None, sandbox: bool, api: str
    ) -> Quote | None:
        """What the run will spend, with the balance; None when it sends no paid create."""
        quoted = self.estimate(plan, api=api, scope=scope)
        if not quoted.items:
            return None
        where = "the sandbox" if sandbox else api
        return Quote(plan, quoted, spend.balance(client.credit), sandbox, where)

    def _spent(
        self,
        client: HiflyClient,
        quote: Quote | None,
        limit: CreditLimit | None,
        api: str,
        before: Mapping[str, Record],
        after: Mapping[str, Record],
    ) -> Spending | None:
        """What the run spent (the balance's drop), kept as a measure when every paid create
        it sent finished done, so that later estimates use it."""
        if quote is None:
            return None
        after_balance = spend.balance(client.credit) if quote.balance is not None else None
        committed = limit.committed if limit is not None else quote.estimate.credits
        spending = Spending(
            quote.estimate, quote.balance, after_balance, limit.limit if limit else None, committed
        )
        if spending.spent is not None:
            measured = spend.measure(self.graph, before, after, spending.spent)
            if measured is not None:
                folder = self.manifest.root / STATE_FOLDER
                spend.add_measured(folder, api, self.manifest.name, measured)
        return spending

    def _carry_out(
        self,
        runner: Scheduler,
        store: StateStore,
        save: Callable[[], dict[str, Record]],
        scope: set[str] | None,
        started: float,
        sandbox: bool,
    ) -> tuple[Outcome, dict[str, Record]]:
        """Run the scheduler, writing the lock file meanwhile and at the end; returns the
        outcome and the records as a run reads them. A run ended by an error saves what
        it can (and, ended by a fault, writes the report) before the error goes on.
        ``started``: when the run began (epoch seconds)."""
        try:
            with _saving_meanwhile(save):
                outcome = runner.run()
        except BaseException as stop:
            # As the run knew them, if the state cannot be read (a lost database).
            known = {**runner.records, **{r.item: r for r in store.unsent()}}
            with contextlib.suppress(StateError, FileWriteError):  # its own error is the one
                known = save()
            if isinstance(stop, HiflyBatchError):  # ended by a fault: say how far it got
                with contextlib.suppress(FileWriteError):
                    final = csv_report.report_records(self.graph, known, scope)
                    self.write_reports(final, run_started=started, sandbox=sandbox)
            raise
        return outcome, save()

    def _save_lock(
        self,
        store: StateStore,
        before: Mapping[str, Record],
        lock_file: Path,
        world_lost: bool = False,
    ) -> dict[str, Record]:
        """Write the lock file from the state (``before``: its records as the run began)
        and the file's own lines; returns the records as the run reports them."""
        local = self._current(store.records())
        changed = {item for item, record in local.items() if before.get(item) != record}
        locked = self._locked(lock_file, world_lost)
        written = lockfile.to_write(local, changed, locked, self._fingerprints())
        lockfile.write(lock_file, lockfile.render(self.manifest.name, written))
        chosen = lockfile.combine(local, written, self._fingerprints())[0]
        # What this run did to an item is what it reports, even where the file keeps other
        # work (a failed --recreate, an output lost here): the run says it failed.
        return {**chosen, **{item: local[item] for item in changed}}

    def _fingerprints(self) -> dict[str, str]:
        return {item.id: item.fingerprint for item in self.graph}


def default_state(manifest: Manifest, *, sandbox: bool) -> Path:
    """``.hifly/<name>.state.db`` beside the manifest; ``<name>.sandbox.state.db`` for
    rehearsals."""
    kind = REHEARSAL if sandbox else ""
    return manifest.root / STATE_FOLDER / f"{manifest.name}{kind}.state.db"


def _all_skipped(plan: Plan, scope: set[str] | None) -> bool:
    """Whether the plan skips every item in ``scope`` (None: every item): nothing to send,
    poll, download, move or edit."""
    in_scope = (s for s in plan.steps if scope is None or s.item.id in scope)
    return all(step.action is Action.SKIP for step in in_scope)


def _local_time(seconds: float) -> datetime:
    """Epoch seconds as an aware datetime in this machine's time zone."""
    return datetime.fromtimestamp(seconds).astimezone()


def _is_sandbox(client: HiflyClient) -> bool:
    """Ask the API what it is; an address that does not answer as the API is a
    configuration fault (exit 3), found before anything is sent."""
    try:
        return client.is_sandbox()
    except HttpStatusError as exc:
        raise ConfigError(
            f"{client.transport.base_url} does not answer as the HiFly API: {exc}"
        ) from None
    except TransportError as exc:  # no answer at all, after the transport's retries
        raise unreachable(client.transport.base_url, exc) from None


def _receiving(
    address: tuple[str, int] | None,
) -> contextlib.AbstractContextManager[CallbackReceiver | None]:
    """The callback receiver on ``address`` for the run, or nothing without one."""
    if address is None:
        return contextlib.nullcontext()
    return CallbackReceiver(*address)


@contextlib.contextmanager
def _saving_meanwhile(save: Callable[[], object]) -> Iterator[None]:
    """Write the lock file every LOCK_SAVE_SECONDS or so while the body runs, so that a
    run killed outright (SIGKILL, a power cut) has recorded most of what it made in the
    file that travels, not only in this machine's state. A large campaign's file takes
    longer to write: the pause grows with it, so writing takes at most 1/LOCK_SAVE_SHARE
    of the run."""
    stop = threading.Event()

    def loop() -> None:
        pause = LOCK_SAVE_SECONDS
        while not stop.wait(pause):
            started = time.monotonic()
            with contextlib.suppress(StateError):  # the write at the end says why
                save()
            pause = max(LOCK_SAVE_SECONDS, LOCK_SAVE_SHARE * (time.monotonic() - started))

    thread = threading.Thread(target=loop, name="lock-file", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
