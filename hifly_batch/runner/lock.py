"""One run at a time: on one state, and on one campaign's lock file.

A lock file in the state's folder (``flock``, released by the kernel when the
process dies, however it dies) names its holder, so a refused run can say who.
A run also holds ``flock`` on the state file itself, which every path to it
shares (hard links too), and on its campaign's record (the lock file beside the
manifest), so that two runs given different states cannot both make, and pay
for, the same items.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hifly_batch.runner.errors import StateError


class StateLocked(StateError):
    """Another run holds the state's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"{path}: another hifly-batch run is using this state file ({holder}); "
            "wait for it to finish, or stop it (its progress is saved) and run again"
        )


class CampaignLocked(StateError):
    """Another run of the same campaign (with another state) holds its lock file."""

    def __init__(self, lock_file: Path, holder: str) -> None:
        super().__init__(
            f"{lock_file}: another hifly-batch run of this campaign is under way ({holder}), "
            "with another state; two runs at once would each pay for what the other "
            "makes. Wait for it to finish, or stop it (its progress is saved) and run again"
        )


@contextlib.contextmanager
def run_lock(state_path: Path) -> Iterator[None]:
    """Hold the state's lock for a run; StateLocked when another process holds it.

    The lock belongs to the file, not to how its path is spelled: a symlink to
    the state, or another spelling of its path, takes the same lock (a hard link,
    another name of the same file, is caught by :func:`state_file_lock`).
    """
    real = Path(os.path.realpath(state_path))
    advice = "make that folder writable, or give the state another path with --state"
    with _held(real.with_name(real.name + ".lock"), lambda h: StateLocked(state_path, h), advice):
        yield


@contextlib.contextmanager
def state_file_lock(state_path: Path) -> Iterator[None]:
    """``flock`` on the state file itself, which every name of it shares (hard links
    too); StateLocked when another run holds it. Taken once the file exists. SQLite's
    own locks are ``fcntl`` ones, which ``flock`` leaves alone on Linux."""
    fd = os.open(state_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(state_path, "by another path to the same file") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def campaign_lock(lock_file: Path, folder: Path) -> Iterator[None]:
    """Hold the lock of a campaign's lock file (by its place in ``folder``, the state
    folder beside the manifest) for a run; CampaignLocked when another run has it."""
    real = Path(os.path.realpath(folder)) / (lock_file.name + ".run")
    advice = (
        "make that folder writable: every run of the campaign takes its lock there, "
        "beside the manifest, whatever --state says"
    )
    with _held(real, lambda holder: CampaignLocked(lock_file, holder), advice):
        yield


@contextlib.contextmanager
def _held(lock_path: Path, busy: Callable[[str], StateError], advice: str) -> Iterator[None]:
    """``flock`` on ``lock_path`` (made if missing), naming this process inside it;
    StateError with ``advice`` when it cannot be made."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(
            f"{lock_path}: the lock of a run cannot be made there ({exc.strerror}); {advice}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(_holder(fd)) from None
        with contextlib.suppress(OSError):  # the holder's name only helps; the flock is the lock
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "pid unknown"
