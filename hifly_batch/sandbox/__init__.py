"""Local emulation of the HiFly API V2 over real HTTP, for rehearsals and tests.

``Sandbox(data_dir, SandboxConfig(...))`` keeps a world (account, files, tasks,
avatars, voices) on disk and serves the documented endpoints on 127.0.0.1.
It shares only ``hifly_batch.apispec`` with the client, so each checks the other.
"""

from __future__ import annotations

from hifly_batch.sandbox.config import Faults, SandboxConfig, parse_faults
from hifly_batch.sandbox.records import Counters, TaskTime
from hifly_batch.sandbox.service import Sandbox
from hifly_batch.sandbox.world import WorldError

__all__ = [
    "Counters",
    "Faults",
    "Sandbox",
    "SandboxConfig",
    "TaskTime",
    "WorldError",
    "parse_faults",
]
