"""The run log: each run's DEBUG-level log of the ``hifly_batch`` loggers, in a file.

``<state folder>/logs/<campaign>-<UTC time>.log`` (mode 0600), whatever ``-v``/``-q``
let through to the terminal, which sees exactly what it saw before. Every line is
written without the token and without the query of any URL (where signed URLs carry
their credentials). The last ``KEEP`` logs of a campaign are kept. A log that cannot be
written never stops a run: it is said once, and the run goes on without it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from hifly_batch import __version__
from hifly_batch.files import without_secret

KEEP = 20  # log files per campaign
FOLDER = "logs"  # in the state folder
LOGGER = "hifly_batch"  # the loggers recorded: this one and those below it
LINE = "%(asctime)s.%(msecs)03dZ %(levelname)s %(threadName)s %(name)s: %(message)s"
STAMP = "%Y%m%dT%H%M%SZ"

log = logging.getLogger(__name__)
_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#\"'<>]+)\?[^\s#\"'<>)]*")


def log_name(campaign: str, now: datetime.datetime, n: int = 1) -> str:
    """``<campaign>-<UTC time>.log``; ``n`` > 1 when a log of the same second exists."""
    suffix = f"-{n}" if n > 1 else ""
    return f"{campaign}-{now.astimezone(datetime.timezone.utc).strftime(STAMP)}{suffix}.log"


def campaign_logs(folder: Path, campaign: str) -> list[Path]:
    """The campaign's logs in ``folder``, oldest first (by the time in their names)."""
    shape = re.compile(rf"{re.escape(campaign)}-\d{{8}}T\d{{6}}Z(-\d+)?\.log")
    try:
        names = [p for p in folder.iterdir() if shape.fullmatch(p.name)]
    except OSError:
        return []
    return sorted(names, key=_order)


def _order(path: Path) -> tuple[str, int]:
    """Sort key: the time in the name, then the number of a second log in that second."""
    stem = path.stem
    base, _, n = stem.rpartition("-")
    return (base, int(n)) if n.isdigit() and base.endswith("Z") else (stem, 1)


def prune(folder: Path, campaign: str, keep: int) -> None:
    """Delete the campaign's oldest logs so that ``keep`` remain (those that cannot be
    deleted stay)."""
    logs = campaign_logs(folder, campaign)
    for path in logs[: max(0, len(logs) - keep)]:
        with contextlib.suppress(OSError):
            path.unlink()


def clean(text: str, secret: str) -> str:
    """``text`` without ``secret`` (the token) and without URL queries."""
    return _URL_QUERY.sub(r"\1?…", without_secret(text, secret))


class _Redacting(logging.Formatter):
    """Each whole line (message, arguments, traceback) as :func:`clean` leaves it."""

    converter = time.gmtime  # type: ignore[assignment]  # (the same function, in UTC)

    def __init__(self, secret: str) -> None:
        super().__init__(LINE, datefmt="%Y-%m-%dT%H:%M:%S")
        self.secret = secret

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record), self.secret)


class RunLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the run log; the first write that fails is said once and ends its writing."""

    def __init__(self, path: Path, stream: object, secret: str) -> None:
        super().__init__(stream)  # type: ignore[arg-type]
        self.path = path
        self.broken = False
        self.setLevel(logging.DEBUG)
        self.setFormatter(_Redacting(secret))

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        self.broken = True
        error = sys.exc_info()[1]
        log.warning("%s: the run log cannot be written (%s); the run goes on without it",
                    self.path, getattr(error, "strerror", None) or error)  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # (said already if it failed)
            self.stream.close()
        super().close()

    def note(self, level: int, message: str, exc: BaseException | None = None) -> None:
        """A line for the run log alone (not the terminal)."""
        exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
        if exc is not None:
            exc_info = (type(exc), exc, exc.__traceback__)
        self.handle(log.makeRecord(log.name, level, __file__, 0, message, (), exc_info))


@contextlib.contextmanager
def recording(
    state_folder: Path,
    campaign: str,
    secret: str = "",
    *,
    now: datetime.datetime | None = None,
) -> Iterator[Path | None]:
    """While the body runs, every record of the ``hifly_batch`` loggers, DEBUG and up, goes
    to a new run log of ``campaign`` in ``state_folder/logs``; yields its path, or None
    when it cannot be written (said once as a warning). ``secret`` (the token) is cut out
    of every line. An error that ends the body is written to the log with its traceback."""
    handler = _open(state_folder / FOLDER, campaign, secret, now)
    if handler is None:
        yield None
        return
    _attach(handler)
    try:
        handler.note(logging.INFO, _about(campaign))
        yield handler.path
    except BaseException as stop:
        handler.note(logging.ERROR, f"the run ended by {type(stop).__name__}: {stop}", stop)
        raise
    finally:
        _detach(handler)
        handler.close()


def _about(campaign: str) -> str:
    return (
        f"hifly-batch {__version__} on Python {platform.python_version()} "
        f"({platform.platform()}), campaign {campaign}, pid {os.getpid()}"
    )


def _open(
    folder: Path, campaign: str, secret: str, now: datetime.datetime | None
) -> RunLogHandler | None:
    """A handler writing a new log file, the oldest ones deleted first; None (said) when
    the folder or the file cannot be made."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _cannot(folder, exc)
        return None
    prune(folder, campaign, KEEP - 1)
    try:
        path, fd = _create(folder, campaign, now)
        stream = open(fd, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    except OSError as exc:
        _cannot(folder / log_name(campaign, now), exc)
        return None
    return RunLogHandler(path, stream, secret)


def _cannot(path: Path, exc: OSError) -> None:
    log.warning("%s: the run log cannot be written (%s); the run goes on without it",
                path, exc.strerror or exc)  # fmt: skip


def _create(folder: Path, campaign: str, now: datetime.datetime) -> tuple[Path, int]:
    """A new file readable by its owner alone, named for ``now``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for n in range(1, 100):
        path = folder / log_name(campaign, now, n)
        try:
            return path, os.open(path, flags, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: too many logs in one second")


# Attaching --------------------------------------------------------------------------
#
# DEBUG records must be made for the log, so the ``hifly_batch`` logger's level is
# lowered while a run records. What went elsewhere before (the terminal's handler, a
# library user's handlers up the tree) must not start getting them: while any run
# records, the logger's own handlers and propagation are replaced by one handler that
# forwards, at the level the logger had, to them.

_lock = threading.Lock()
_recording: list[RunLogHandler] = []
_saved: tuple[list[logging.Handler], int, bool] | None = None


class _Forward(logging.Handler):
    """Hands each record at ``level`` and above to where the logger sent records before:
    its own handlers, then, if it propagated, its ancestors' (as ``Logger.callHandlers``
    does, down to ``logging.lastResort`` when there is none)."""

    def __init__(self, logger: logging.Logger, handlers: list[logging.Handler], level: int,
                 propagate: bool) -> None:  # fmt: skip
        super().__init__(level)
        self.logger, self.handlers, self.propagate = logger, handlers, propagate

    def emit(self, record: logging.LogRecord) -> None:
        found = 0
        for handler in self._destinations():
            found += 1
            if record.levelno >= handler.level:
                handler.handle(record)
        last = logging.lastResort
        if not found and last is not None and record.levelno >= last.level:
            last.handle(record)

    def _destinations(self) -> Iterator[logging.Handler]:
        yield from self.handlers
        parent = self.logger.parent if self.propagate else None
        while parent is not None:
            yield from parent.handlers
            parent = parent.parent if parent.propagate else None


def _attach(handler: RunLogHandler) -> None:
    global _saved
    logger = logging.getLogger(LOGGER)
    with _lock:
        if not _recording:
            _saved = (logger.handlers, logger.level, logger.propagate)
            shown = logger.getEffectiveLevel()
            forward = _Forward(logger, list(logger.handlers), shown, logger.propagate)
            logger.handlers = [forward]
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
        _recording.append(handler)
        logger.addHandler(handler)


def _detach(handler: RunLogHandler) -> None:
    global _saved
    logger = logging.getLogger(LOGGER)
    with _lock:
        logger.removeHandler(handler)
        _recording.remove(handler)
        if not _recording and _saved is not None:
            logger.handlers, level, logger.propagate = _saved
            logger.setLevel(level)
            _saved = None
