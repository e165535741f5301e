"""What the worker jobs tell the runner's loop: one event per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass

from hifly_batch.runner.state import Record


@dataclass(frozen=True)
class Event:
    item_id: str


@dataclass(frozen=True)
class Submitted(Event):
    record: Record


@dataclass(frozen=True)
class StillRunning(Event):
    pass


@dataclass(frozen=True)
class TaskEnded(Event):
    """The remote task finished (either way): its generating slot is free."""


@dataclass(frozen=True)
class Finished(Event):
    """The item reached a final status for this run (done, failed, uncertain)."""

    record: Record
    transient: bool = False  # a failure that another attempt may mend
    not_created: bool = False  # a create the service provably did not make: free to resend


TOO_MANY_REQUESTS = 429  # Deferred's code for an HTTP 429 (the API's own codes are >= 1000)


@dataclass(frozen=True)
class Deferred(Event):
    """Not submitted: the service asked to wait (1001/1015, or HTTP 429 with ``wait``
    seconds from its Retry-After) or credits ran out (1002)."""

    code: int
    record: Record
    wait: float = 0.0


@dataclass(frozen=True)
class Hinted(Event):
    """A callback named ``task_id`` (only a hint: the task is queried). It may be of no
    task of this run, so its ``item_id`` is empty."""

    task_id: str


@dataclass(frozen=True)
class PollFailed(Event):
    error: str


@dataclass(frozen=True)
class Interrupted(Event):
    """Ctrl-C, or SIGTERM (``terminated``), reached the run: send nothing new. It
    concerns the whole run, so its ``item_id`` is empty."""

    terminated: bool = False


@dataclass(frozen=True)
class Fatal(Event):
    """A job hit an error that ends the run (bad token, a bug)."""

    error: BaseException


@dataclass(frozen=True)
class JobEnded(Event):
    """The last event of every job."""
