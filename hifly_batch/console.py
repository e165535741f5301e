"""All terminal writing: results to stdout, diagnostics and logs to stderr.

Streams are looked up at call time so tests that capture ``sys.stdout`` and
``sys.stderr`` see everything. While a progress bar shows (:func:`above_bar`), lines
and log records are written above it, never through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

_quiet = False
_bar_shown = False
LOGGER = "hifly_batch"


def out(text: str) -> None:
    """A result line for stdout (what scripts read)."""
    _write(sys.stdout, text)


def err(text: str) -> None:
    """A diagnostic for stderr."""
    _write(sys.stderr, text)


def _write(stream: TextIO, text: str) -> None:
    """Write a line; a reader that went away (``| head -1``) ends the output, not the
    command: what it was doing goes on, and it exits as it would have."""
    try:
        with _above_the_bar(stream):
            stream.write(text + "\n")
            stream.flush()
    except BrokenPipeError:
        _discard(stream)


def _above_the_bar(stream: TextIO) -> contextlib.AbstractContextManager[object]:
    """While a bar shows on the terminal: clear it, let the line be written, draw it again."""
    if not _bar_shown:
        return contextlib.nullcontext()
    from tqdm import tqdm  # (imported already: a bar shows)

    return tqdm.external_write_mode(file=stream)


@contextlib.contextmanager
def above_bar(shown: bool = True) -> Iterator[None]:
    """While the body runs a progress bar may show on stderr (``shown``): lines written
    here and the ``hifly_batch`` log records that reach the terminal go above it, through
    tqdm, so that the bar stays whole on its own line."""
    global _bar_shown
    if not shown:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    _bar_shown = True
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger(LOGGER)]):
            yield
    finally:
        _bar_shown = False


def _discard(stream: TextIO) -> None:
    """Send the stream's further output (and the flush at exit) nowhere."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def interactive() -> bool:
    """Whether a person can answer a question: stdin is a terminal (stderr may go to a
    log file: the question then goes to the terminal itself, see :func:`confirm`)."""
    return sys.stdin.isatty()


def confirm(context: str, question: str) -> bool:
    """Show ``context`` and ask ``question`` where the person is: on stderr when it is a
    terminal, else on the terminal itself (``/dev/tty``, as ``2>run.log`` leaves it), and
    read the answer from stdin. True only for ``y`` or ``yes`` (any case); an empty answer
    or the end of input is no."""
    with _terminal() as screen:
        screen.write(f"{context}\n{question}")
        screen.flush()
        answer = sys.stdin.readline()
        if not answer.endswith("\n"):
            screen.write("\n")  # the end of input: end the question's line
            screen.flush()
    return answer.strip().lower() in ("y", "yes")


@contextlib.contextmanager
def _terminal() -> Iterator[TextIO]:
    if sys.stderr.isatty():
        yield sys.stderr
        return
    try:
        tty = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError:  # no terminal of its own: stderr is where a question can go
        yield sys.stderr
        return
    with tty:
        yield tty


def info(text: str) -> None:
    """A progress message for stderr, silenced by ``--quiet``."""
    if not _quiet:
        err(text)


def configure(verbosity: int) -> None:
    """Set up logging: -q → errors only, default → warnings, -v → info, -vv → debug."""
    global _quiet
    _quiet = verbosity < 0
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG
    )
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger(LOGGER)
    root.handlers[:] = [handler]
    root.setLevel(level)
