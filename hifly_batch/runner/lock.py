"""The state's lock: one run at a time on one state.

A lock file beside the state (``flock``, released by the kernel when the
process dies, however it dies) names its holder, so a refused run can say who.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from hifly_batch.runner.errors import StateError


class StateLocked(StateError):
    """Another run holds the state's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"{path}: another hifly-batch run is using this state file ({holder}); "
            "wait for it to finish, or stop it (its progress is saved) and run again"
        )


@contextlib.contextmanager
def run_lock(state_path: Path) -> Iterator[None]:
    """Hold the state's lock for a run; StateLocked when another process holds it.

    The lock belongs to the file, not to how its path is spelled: a symlink to
    the state, or another spelling of its path, takes the same lock.
    """
    real = Path(os.path.realpath(state_path))
    lock_path = real.with_name(real.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(state_path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "pid unknown"
