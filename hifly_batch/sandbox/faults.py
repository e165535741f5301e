"""Seeded fault decisions: the same seed and request sequence give the same faults.

Every decision comes from a ``random.Random`` seeded with the fault seed, a
name (the endpoint's short name, or the task id) and a sequence number, so a
run can be repeated exactly. Every rate is drawn on every request, in a fixed
order, so changing one rate does not shift the others.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from hifly_batch.sandbox.config import RATE_FIELDS, Faults


class RequestKind(enum.Enum):
    """What a request is, as far as fault injection cares."""

    CREATE = "create"  # records a task: never dropped before processing
    API_READ = "api_read"  # GET API endpoints
    API_WRITE = "api_write"  # create_upload_url, voice/edit
    UPLOAD = "upload"  # PUT to a signed upload URL
    DOWNLOAD = "download"  # GET of a signed file URL
    OTHER = "other"  # unknown paths


_API_KINDS = frozenset({RequestKind.CREATE, RequestKind.API_READ, RequestKind.API_WRITE})
_DROPPABLE = frozenset(
    {RequestKind.API_READ, RequestKind.API_WRITE, RequestKind.UPLOAD, RequestKind.DOWNLOAD}
)


@dataclass(frozen=True)
class RequestFaults:
    """The faults decided for one request."""

    drop: bool = False
    http_500: bool = False
    slow: bool = False
    malformed_json: bool = False
    expired_url: bool = False
    drop_after_create: bool = False
    http_429: bool = False
    put_fail: bool = False
    gateway_after_create: bool = False

    def names(self) -> list[str]:
        """The names of the faults that are set, as counted in the counters."""
        return [name for name, on in vars(self).items() if on]


@dataclass(frozen=True)
class TaskFate:
    """How one task turns out: extra seconds beyond the base time, and failure."""

    jitter: float
    fails: bool


def _rng(seed: int, name: str, seq: int | str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: stable across runs.
    return random.Random(f"{seed}|{name}|{seq}")


def decide_request(faults: Faults, name: str, seq: int, kind: RequestKind) -> RequestFaults:
    """The faults for request number ``seq`` of endpoint ``name``.

    A dropped connection excludes every other fault; an HTTP 500 or 429 excludes
    the ones that need a processed answer. Of two faults that answer in place of
    each other, the older one wins: a 500 over a 429, a connection dropped after
    a create over a gateway's answer.
    """
    rng = _rng(faults.seed, name, seq)
    draw = {rate: rng.random() < getattr(faults, rate) for rate in RATE_FIELDS}
    if kind in _DROPPABLE and draw["drop"]:
        return RequestFaults(drop=True)
    http_500 = kind in _API_KINDS and draw["http_500"]
    http_429 = kind in _API_KINDS and not http_500 and draw["http_429"]
    processed = not (http_500 or http_429)
    create = processed and kind is RequestKind.CREATE
    drop_after_create = create and draw["drop_after_create"]
    return RequestFaults(
        http_500=http_500,
        slow=draw["slow"],
        malformed_json=processed and kind is RequestKind.API_READ and draw["malformed_json"],
        expired_url=processed and kind is RequestKind.API_READ and draw["expired_url"],
        drop_after_create=drop_after_create,
        http_429=http_429,
        put_fail=kind is RequestKind.UPLOAD and draw["put_fail"],
        gateway_after_create=create and not drop_after_create and draw["gateway_after_create"],
    )


def decide_task(faults: Faults, task_id: str, jitter_span: float) -> TaskFate:
    """Jitter in ``[0, jitter_span)`` and whether the task fails, from seed and task id."""
    rng = _rng(faults.seed, "task", task_id)
    jitter = rng.random() * jitter_span
    fails = rng.random() < faults.task_fail
    return TaskFate(jitter=jitter, fails=fails)


def decide_callback_drop(faults: Faults, task_id: str) -> bool:
    """Whether the task's callback is lost (never sent), from seed and task id."""
    return _rng(faults.seed, "callback", task_id).random() < faults.callback_drop
