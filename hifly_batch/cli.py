"""Command-line entry point: parse, then dispatch to ``commands/<verb>.py``.

Each command module offers ``register(subparsers, common)``, which adds its
parser and sets ``handler(args, env) -> int``. Only this module maps
exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence

from hifly_batch import __version__, console
from hifly_batch.errors import ExitStatus, HiflyBatchError, Terminated
from hifly_batch.files import without_secret, write_crash_log
from hifly_batch.manifest.diagnostics import ManifestInvalid

# Order of appearance in --help.
COMMANDS = (
    "init",
    "validate",
    "plan",
    "run",
    "status",
    "report",
    "voices",
    "credit",
    "state_copy",
    "sandbox_serve",
)


def global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name.

    Sub-parsers get them with SUPPRESS defaults so that a value given before
    the command is not overwritten by the sub-parser's default.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help="API base URL (default: $HIFLY_BASE_URL, else https://hfw-api.hifly.cc)",
    )
    group.add_argument(
        "--sandbox",
        action="store_true",
        default=default(False),
        help="talk to a local sandbox started in-process instead of the real API",
    )
    group.add_argument(
        "--state",
        metavar="PATH|URL",
        default=default(None),
        help="state file, or a postgresql:// database (default: $HIFLY_STATE, else "
        ".hifly/<name>.state.db beside the manifest)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="more log output on stderr (-vv for HTTP details)",
    )
    group.add_argument(
        "-q", "--quiet", action="count", default=default(0), help="only errors on stderr"
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default(False),
        help="no progress bar (it is also off when stderr is not a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hifly-batch",
        description="Turn a YAML manifest into finished HiFly digital-human videos.",
        epilog="example:\n  hifly-batch --sandbox run manifests/quickstart.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hifly-batch {__version__}")
    global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"hifly_batch.commands.{name}")
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; returns its exit code (SPEC §4)."""
    try:
        args = build_parser().parse_args(argv)  # (imports every command: takes a moment)
    except KeyboardInterrupt:
        console.err("hifly-batch: interrupted")
        return ExitStatus.INTERRUPTED
    console.configure(args.verbose - args.quiet)
    environ = os.environ if env is None else env
    if getattr(args, "state", None) is None and environ.get("HIFLY_STATE"):
        args.state = environ["HIFLY_STATE"]  # (a path, or a postgresql:// database)
    try:
        with _sigterm_as_interrupt():
            return int(args.handler(args, environ))
    except Terminated:
        console.err("hifly-batch: stopped by SIGTERM")
        return ExitStatus.TERMINATED
    except KeyboardInterrupt:
        console.err("hifly-batch: interrupted")
        return ExitStatus.INTERRUPTED
    except ManifestInvalid as exc:
        console.err(exc.render())
        return exc.exit_status
    except HiflyBatchError as exc:
        console.err(f"hifly-batch: error: {exc}")
        return exc.exit_status
    except Exception:
        return _crash(os.environ if env is None else env)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (raised as :class:`Terminated`), so a run
    records what it sent and writes its reports before it exits 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _crash(env: Mapping[str, str]) -> int:
    """An unexpected error: the traceback goes to a log file, not the terminal. The token
    is cut out of both, whatever put it there."""
    from hifly_batch.api.connect import TOKEN_VARIABLE  # the crash path only pays for it

    token = env.get(TOKEN_VARIABLE, "")
    path = write_crash_log(f"hifly-batch {__version__}\n{traceback.format_exc()}", token)
    exc = sys.exc_info()[1]
    console.err(
        without_secret(f"hifly-batch: internal error: {type(exc).__name__}: {exc}", token)
        + f"\nThe details are in {path}; please attach that file when reporting the problem."
    )
    return ExitStatus.ITEMS_FAILED
