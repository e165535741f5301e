"""All terminal writing: results to stdout, diagnostics and logs to stderr.

Streams are looked up at call time so tests that capture ``sys.stdout`` and
``sys.stderr`` see everything.
"""

from __future__ import annotations

import logging
import sys

_quiet = False


def out(text: str) -> None:
    """A result line for stdout (what scripts read)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """A diagnostic for stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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
    root = logging.getLogger("hifly_batch")
    root.handlers[:] = [handler]
    root.setLevel(level)
