"""The work done in the HTTP worker pool, one job per step of an item.

A job talks to the API, writes its item's state the moment something
happens (above all: the task id the instant a create is answered, to keep
the at-most-once window as short as the store allows), and posts an event
for the runner's loop. Jobs make no decisions about other items.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from hifly_batch.api.client import HiflyClient, Task, WorkTask
from hifly_batch.api.errors import (
    ApiError,
    AuthError,
    ClientError,
    HttpStatusError,
    RateLimited,
    SubmissionUncertain,
    TransportError,
    UrlExpiredError,
)
from hifly_batch.apispec import BACK_PRESSURE_CODES, INSUFFICIENT_CREDITS, TaskStatus
from hifly_batch.core.graph import Graph, Item, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import output_target
from hifly_batch.files import write_crash_log
from hifly_batch.manifest.media import file_sha256
from hifly_batch.runner.creates import resolve, send_create
from hifly_batch.runner.errors import ItemError, NoSuchPublicVoice, OutputUnavailable, StateError
from hifly_batch.runner.events import (
    TOO_MANY_REQUESTS,
    Deferred,
    Event,
    Fatal,
    Finished,
    JobEnded,
    PollFailed,
    StillRunning,
    Submitted,
    TaskEnded,
)
from hifly_batch.runner.outputs import OutputFolder
from hifly_batch.runner.state import Record, StateStore, new_record

DOWNLOAD_REFRESHES = 3  # fresh URLs asked for when a download link has expired


@dataclass
class JobContext:
    """What jobs share. Events a job posts reach the loop together when it ends (one
    wake-up of the loop per job); ``post_now`` sends one at once."""

    graph: Graph
    client: HiflyClient
    store: StateStore
    outputs: OutputFolder
    deliver: Callable[[list[Event]], None]
    stopping: threading.Event
    wall: Callable[[], float] = time.time
    public_voices: dict[str, str] | None = None
    _voices_lock: threading.Lock = field(default_factory=threading.Lock)
    # Moves look at a file, then rename it: one at a time, or two outputs swapping
    # paths could each look before the other renames.
    moving: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def post(self, event: Event) -> None:
        outbox = getattr(self._local, "outbox", None)
        if outbox is None:
            self.deliver([event])
        else:
            outbox.append(event)

    def post_now(self, event: Event) -> None:
        self.deliver([event])


def guarded(job: Callable[..., None]) -> Callable[..., None]:
    """Run a job and deliver what it posted, ending with ``JobEnded``.

    What ends the run (a refused token, a base URL that is not the API, a state that
    cannot be written) reaches the loop as ``Fatal``. Anything else that escapes is a
    bug: it becomes this item's failure, its traceback a crash log, and the run goes on.
    """

    def run(ctx: JobContext, item: Item, *args: Any) -> None:
        outbox: list[Event] = []
        ctx._local.outbox = outbox
        try:
            job(ctx, item, *args)
        except (AuthError, HttpStatusError, StateError) as exc:
            outbox.append(Fatal(item.id, exc))
        except Exception as exc:
            try:
                outbox.append(Finished(item.id, _crashed(ctx, item, exc)))
            except Exception as again:  # the state itself failed: nothing can go on
                outbox.append(Fatal(item.id, again))
        finally:
            ctx._local.outbox = None
            ctx.deliver([*outbox, JobEnded(item.id)])

    return run


# Submitting ----------------------------------------------------------------


@guarded
def submit(ctx: JobContext, item: Item, record: Record, deps: Mapping[str, Record]) -> None:
    """Do an item's first step: an upload, a lookup, or a create request."""
    if ctx.stopping.is_set():  # queued before an interrupt: send nothing new
        return
    if item.kind in _NO_TASK:
        _finish_without_task(ctx, item, record)
        return
    try:
        request = resolve(item.request, lambda name, dep: _value_of(ctx, name, deps[dep]))
    except (ClientError, ItemError, OSError) as exc:  # OSError: a local file to upload
        ctx.post(Finished(item.id, _fail(ctx, record, exc), transient=True))
        return
    record = ctx.store.update(
        record,
        status=Status.SUBMITTING,
        attempts=record.attempts + 1,
        task_id=None,
        resource_id=None,
        error_code=None,
        error_message=None,
        started_at=ctx.wall(),
        finished_at=None,
        fingerprint=item.fingerprint,
        replaces=(*record.replaces, record.task_id)
        if record.has_work and record.task_id
        else record.replaces,
    )
    _create(ctx, item, record, request)


def _create(ctx: JobContext, item: Item, record: Record, request: dict[str, Any]) -> None:
    try:
        task_id = send_create(ctx.client, item.kind, request)
    except SubmissionUncertain as exc:
        message = f"may have been submitted, answer lost: {exc.detail}"
        uncertain = ctx.store.update(record, status=Status.UNCERTAIN, error_message=message)
        ctx.post(Finished(item.id, uncertain))
        return
    except RateLimited as exc:  # asked to wait: nothing was made, and no try is used up
        waiting = ctx.store.update(
            record, status=Status.PENDING, attempts=record.attempts - 1, error_message=str(exc)
        )
        ctx.post(Deferred(item.id, TOO_MANY_REQUESTS, waiting, exc.retry_after))
        return
    except ApiError as exc:
        if exc.code in BACK_PRESSURE_CODES or exc.code == INSUFFICIENT_CREDITS:
            waiting = ctx.store.update(
                record,
                status=Status.PENDING,
                attempts=record.attempts - 1,
                error_code=exc.code,
                error_message=str(exc),
            )
            ctx.post(Deferred(item.id, exc.code, waiting))
            return
        ctx.post(Finished(item.id, _fail(ctx, record, exc)))
        return
    except TransportError as exc:  # provably not created: not sent, or answered 5xx
        ctx.post(Finished(item.id, _fail(ctx, record, exc), transient=True, not_created=True))
        return
    except ClientError as exc:
        ctx.post(Finished(item.id, _fail(ctx, record, exc)))
        return
    ctx.post(Submitted(item.id, ctx.store.update(record, status=Status.RUNNING, task_id=task_id)))


def _value_of(ctx: JobContext, name: str, dep: Record) -> tuple[str, Any]:
    """The value a reference stands for; an audios item's output is re-queried to be fresh."""
    if dep.section != "audios":
        return name, dep.resource_id
    assert dep.task_id is not None
    try:
        url = ctx.client.video_task(dep.task_id).url
    except ClientError:
        url = ""
    if url:
        return name, url
    # No fresh link: send the downloaded file instead.
    kept = ctx.outputs.existing(dep.output) if dep.output else None
    if kept is None:
        raise OutputUnavailable(
            f"the audio of {dep.item} is neither offered by its task {dep.task_id} nor kept "
            f"in the output folder; make it again with --recreate '{dep.item}'"
        )
    return "file_id", ctx.client.upload_file(kept)


_NO_TASK = frozenset(
    {ItemKind.UPLOAD, ItemKind.REMOTE_ASSET, ItemKind.EXISTING_AVATAR,
     ItemKind.EXISTING_VOICE, ItemKind.PUBLIC_VOICE}
)  # fmt: skip


def _finish_without_task(ctx: JobContext, item: Item, record: Record) -> None:
    record = ctx.store.update(
        record,
        attempts=record.attempts + 1,
        started_at=ctx.wall(),
        error_code=None,
        error_message=None,
        fingerprint=item.fingerprint,
    )
    try:
        resource = _resource_without_task(ctx, item)
        if item.settings:
            _edit(ctx, resource, item.settings)
    except (ClientError, ItemError, OSError) as exc:  # OSError: the file to upload
        transient = isinstance(exc, TransportError)
        ctx.post(Finished(item.id, _fail(ctx, record, exc), transient=transient))
        return
    ctx.post(Finished(item.id, _done(ctx, item, record, resource_id=resource)))


def _resource_without_task(ctx: JobContext, item: Item) -> str:
    if item.kind is ItemKind.UPLOAD:
        assert item.file is not None
        return ctx.client.upload_file(item.file)
    if item.kind is ItemKind.PUBLIC_VOICE:
        return _public_voice(ctx, item.request["title"])
    field_name = {ItemKind.REMOTE_ASSET: "url", ItemKind.EXISTING_AVATAR: "avatar"}
    return str(item.request[field_name.get(item.kind, "voice")])


def _public_voice(ctx: JobContext, title: str) -> str:
    with ctx._voices_lock:  # one listing per run, however many items ask
        if ctx.public_voices is None:
            ctx.public_voices = {v.title: v.voice for v in ctx.client.all_voices(public=True)}
    if title not in ctx.public_voices:
        known = ", ".join(sorted(ctx.public_voices)[:10])
        raise NoSuchPublicVoice(f"no public voice is titled {title!r} (some that are: {known})")
    return ctx.public_voices[title]


# Voice settings --------------------------------------------------------------


@guarded
def edit_voice(ctx: JobContext, item: Item, record: Record) -> None:
    """Apply changed rate/volume/pitch to an existing voice (no new clone)."""
    assert item.settings is not None and record.resource_id is not None
    try:
        _edit(ctx, record.resource_id, item.settings)
    except ClientError as exc:
        transient = isinstance(exc, TransportError)
        ctx.post(Finished(item.id, _fail(ctx, record, exc), transient=transient))
        return
    ctx.post(Finished(item.id, _done(ctx, item, record, resource_id=record.resource_id)))


def _edit(ctx: JobContext, voice: str, settings: Mapping[str, str]) -> None:
    ctx.client.edit_voice(
        voice, rate=settings["rate"], volume=settings["volume"], pitch=settings["pitch"]
    )


# Polling and finishing --------------------------------------------------------


@guarded
def poll(ctx: JobContext, item: Item, record: Record) -> None:
    """Ask how a task is doing; when it has ended, free its slot, then finish the item."""
    if ctx.stopping.is_set():
        return
    assert record.task_id is not None
    try:
        task = _query(ctx.client, item.kind, record.task_id)
    except ClientError as exc:
        if (
            not isinstance(exc, TransportError)
            and getattr(exc, "code", None) not in BACK_PRESSURE_CODES
        ):
            ctx.post(TaskEnded(item.id))
            if record.has_work:  # made and paid for: its mark stays, and what to do is said
                _keep_work(ctx, item, record, _unfetched(item, exc))
            else:
                ctx.post(Finished(item.id, _fail(ctx, record, exc)))
        else:
            ctx.post(PollFailed(item.id, str(exc)))
        return
    if not task.finished:
        ctx.post(StillRunning(item.id))
        return
    ctx.post_now(TaskEnded(item.id))  # the slot frees now, before the download
    if task.status is TaskStatus.FAILED:
        message = task.error_message or "the task failed"
        failed = ctx.store.update(
            record,
            status=Status.FAILED,
            error_code=task.error_code,
            error_message=message,
            finished_at=ctx.wall(),
            work_exists=False,  # the task failed: a retry makes it anew
        )
        ctx.post(Finished(item.id, failed))
        return
    _finish_task(ctx, item, record, task)


def _query(client: HiflyClient, kind: ItemKind, task_id: str) -> Task:
    if kind in (ItemKind.AVATAR_BY_VIDEO, ItemKind.AVATAR_BY_IMAGE):
        return client.avatar_task(task_id)
    if kind is ItemKind.VOICE_CLONE:
        return client.voice_task(task_id)
    return client.video_task(task_id)


def _finish_task(ctx: JobContext, item: Item, record: Record, task: Task) -> None:
    try:
        if isinstance(task, WorkTask):
            resource, saved = None, _save_output(ctx, item, record, task)
        else:
            resource, saved = getattr(task, "avatar", "") or getattr(task, "voice", ""), {}
            if item.settings:
                _edit(ctx, resource, item.settings)
    except (ClientError, ItemError, OSError) as exc:
        failed = _fail(ctx, record, exc, work_exists=True)
        ctx.post(Finished(item.id, failed, transient=True))
        return
    ctx.post(Finished(item.id, _done(ctx, item, record, resource_id=resource, **saved)))


@guarded
def refetch(ctx: JobContext, item: Item, record: Record) -> None:
    """A done item whose output file is gone: download it again from a fresh task URL."""
    try:
        saved = _download_again(ctx, item, record)
    except (ClientError, ItemError, OSError) as exc:
        _keep_work(ctx, item, record, _unfetched(item, exc))
        return
    ctx.post(Finished(item.id, ctx.store.update(record, status=Status.DONE, **saved)))


@guarded
def move_output(ctx: JobContext, item: Item, record: Record) -> None:
    """A done item whose output path changed: move its file there, or download it there
    when the old file is gone or damaged. Nothing is created."""
    target = output_target(item, record.output)
    assert target is not None and record.output is not None
    try:
        with ctx.moving:
            # Its own file, by size and SHA-256: two outputs that swap paths are the same
            # size, and the first move replaces the other.
            old = ctx.outputs.existing(record.output)
            own = ctx.outputs.whole(record.output, record.output_size, record.output_sha256)
            moved = old is not None and own
            if old is not None and moved:
                os.replace(old, ctx.outputs.destination(target))
        saved = {"output": target} if moved else _download_again(ctx, item, record)
    except (ClientError, ItemError, OSError) as exc:
        _keep_work(ctx, item, record, f"output could not be moved to {target}: {exc}")
        return
    ctx.post(Finished(item.id, ctx.store.update(record, status=Status.DONE, **saved)))


def _download_again(ctx: JobContext, item: Item, record: Record) -> dict[str, Any]:
    assert record.task_id is not None
    task = ctx.client.video_task(record.task_id)
    if task.status is not TaskStatus.DONE:
        raise OutputUnavailable(f"task {record.task_id} no longer answers with an output")
    return _save_output(ctx, item, record, task)


def _unfetched(item: Item, why: object) -> str:
    return (
        f"output missing and could not be downloaded again: {why}; if the service no longer "
        f"has it, `hifly-batch run --recreate '{item.id}'` makes it again (and pays again)"
    )


def _keep_work(ctx: JobContext, item: Item, record: Record, message: str) -> None:
    """Fail the item, keeping the mark that its work exists and is paid for: the next run
    downloads it (``plan``: download), never creates it again."""
    failed = ctx.store.update(record, status=Status.FAILED, error_message=message, work_exists=True)
    ctx.post(Finished(item.id, failed))


def _save_output(ctx: JobContext, item: Item, record: Record, task: WorkTask) -> dict[str, Any]:
    """Download a finished work's output; returns the record fields that describe it."""
    if not task.url:  # (API doc: a finished work carries video_Url)
        raise OutputUnavailable(f"task {record.task_id} finished without an output URL")
    relative = output_path(item, task.url)
    dest = ctx.outputs.destination(relative)
    url = task.url
    for attempt in range(DOWNLOAD_REFRESHES + 1):
        try:
            size = ctx.client.download(url, dest)
            break
        except UrlExpiredError:
            if attempt == DOWNLOAD_REFRESHES:
                raise
            assert record.task_id is not None
            url = ctx.client.video_task(record.task_id).url
    return {
        "output": relative,
        "output_size": size,
        "output_sha256": file_sha256(dest),
        "duration_s": task.duration,
    }


def output_path(item: Item, url: str) -> str:
    """The item's output path; a default audio output takes the URL's extension."""
    assert item.output is not None
    if not item.output_default or item.kind is not ItemKind.AUDIO_BY_TTS:
        return item.output
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    return str(PurePosixPath(item.output).with_suffix("." + (suffix or "mp3")))


# Records ------------------------------------------------------------------------


def _done(
    ctx: JobContext, item: Item, record: Record, *, resource_id: str | None, **saved: Any
) -> Record:
    return ctx.store.update(
        record,
        status=Status.DONE,
        resource_id=resource_id,
        finished_at=ctx.wall(),
        fingerprint=item.fingerprint,
        settings_fingerprint=item.settings_fingerprint or "",
        settings=dict(item.settings) if item.settings else None,
        field_digests=ctx.graph.field_digests(item.id),
        work_exists=False,
        error_code=None,
        error_message=None,
        **saved,
    )


def _fail(
    ctx: JobContext, record: Record, exc: BaseException, *, work_exists: bool = False
) -> Record:
    """Record a failure; ``work_exists``: the task finished, only keeping its result failed.

    A refused token is no item's failure: it is raised again to end the run (exit 3).
    """
    if isinstance(exc, (AuthError, HttpStatusError)):  # the run's fault, not the item's
        if record.status is Status.SUBMITTING:  # answered 401: nothing was created
            ctx.store.update(record, status=Status.PENDING, attempts=record.attempts - 1)
        raise exc
    code = getattr(exc, "code", None)
    return ctx.store.update(
        record,
        status=Status.FAILED,
        error_code=code if isinstance(code, int) else None,
        error_message=str(exc),
        finished_at=ctx.wall(),
        work_exists=work_exists,
    )


def _crashed(ctx: JobContext, item: Item, exc: Exception) -> Record:
    """Record an unexpected error as the item's failure, with a crash log. An item whose
    create may have been sent becomes uncertain, never failed: a retry could pay twice."""
    log = write_crash_log(traceback.format_exc(), ctx.client.transport.secret)
    record = ctx.store.get(item.id) or new_record(item)
    status = Status.UNCERTAIN if record.status is Status.SUBMITTING else Status.FAILED
    message = f"internal error: {type(exc).__name__}: {exc} (details in {log})"
    return ctx.store.update(record, status=status, error_message=message, finished_at=ctx.wall())


def work_exists(record: Record) -> bool:
    """A failed item whose task exists remotely: it finished but keeping its result failed,
    or the run stopped waiting for it (task_timeout). A retry looks at that task first and
    fetches its result, never re-creating what may be paid for already."""
    return record.status is Status.FAILED and record.task_id is not None and record.work_exists
