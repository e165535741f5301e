"""Files written whole or not at all: a reader sees the old file or the new one.

Shared by every layer that writes a file a person or another program reads (the
report, the review page, the lock file).
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from pathlib import Path

from hifly_batch.errors import ExitStatus, HiflyBatchError


class FileWriteError(HiflyBatchError):
    """A file could not be written (a full disk, a read-only folder); exit 3."""

    exit_status = ExitStatus.AUTH_OR_CONFIG


def write_atomically(path: Path, text: str, *, encoding: str = "utf-8", mode: int = 0o644) -> None:
    """Put ``text`` at ``path`` through a temporary file beside it and a rename, flushed to
    disk first; :class:`FileWriteError` naming the path and what to do when it cannot be
    written, with no temporary file left behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # mkstemp makes 0600; these files are for everyone to read
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None


def _cannot_write(path: Path, exc: OSError) -> FileWriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the folder writable"
    else:
        advice = "check that the folder exists and can be written"
    return FileWriteError(f"{path}: cannot be written ({exc.strerror or exc}); {advice}")


def write_crash_log(text: str, secret: str = "") -> Path:
    """Write ``text`` (a traceback) to a new ``hifly-batch-crash-*.log`` in the temporary
    folder, with ``secret`` (the token) and each line of it cut out; returns its path."""
    fd, name = tempfile.mkstemp(prefix="hifly-batch-crash-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(without_secret(text, secret))
    return Path(name)


def without_secret(text: str, secret: str) -> str:
    """``text`` with ``secret``, and each line of it, replaced by ``***`` (a secret with a
    newline shows in a traceback as its pieces, or as a bytes repr with ``\\n``)."""
    pieces = {secret, secret.strip(), repr(secret.encode(errors="replace"))[2:-1]}
    pieces |= {line for line in secret.splitlines() if len(line.strip()) >= 4}
    for piece in sorted((p for p in pieces if p.strip()), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def leftovers(path: Path) -> list[Path]:
    """Temporary files that writes of ``path`` cut short (a killed process) left."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
