"""An item's lifecycle, as the state file records it and the plan reads it."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """An item's lifecycle; the report shows the terminal ones."""

    PENDING = "pending"  # known, nothing sent yet
    SUBMITTING = "submitting"  # create request about to be sent: its answer is not recorded
    RUNNING = "running"  # task id recorded, remote work under way
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"  # an input failed
    UNCERTAIN = "uncertain"  # a create may have been made; its task id is unknown
    SKIPPED = "skipped"  # filtered out by --only
