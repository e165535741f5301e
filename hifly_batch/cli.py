"""Command-line entry point: parse, then dispatch to ``commands/<verb>.py``.

Each command module offers ``register(subparsers, common)``, which adds its
parser, with ``parents=common(...)`` for the global options that mean something
to it, and sets ``handler(args, env) -> int``. Only this module maps
exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence

from hifly_batch import __version__, console
from hifly_batch.errors import ExitStatus, HiflyBatchError, Terminated
from hifly_batch.files import without_secret, write_crash_log
from hifly_batch.manifest.diagnostics import ManifestInvalid
from hifly_batch.runner.errors import RehearsalOnly

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


def _base_url(group: argparse._ArgumentGroup, default: object) -> None:
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default,
        help="API base URL (default: $HIFLY_BASE_URL, else https://hfw-api.hifly.cc)",
    )


def _sandbox(group: argparse._ArgumentGroup, default: object) -> None:
    group.add_argument(
        "--sandbox",
        action="store_true",
        default=default,
        help="rehearse on a local sandbox started in-process instead of the real API",
    )


def _state(group: argparse._ArgumentGroup, default: object) -> None:
    group.add_argument(
        "--state",
        metavar="PATH|URL",
        default=default,
        help="state file, or a postgresql:// database (default: $HIFLY_STATE, else "
        ".hifly/<name>.state.db beside the manifest)",
    )


def _verbosity(group: argparse._ArgumentGroup, default: object) -> None:
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="more log output on stderr (-vv for HTTP details)",
    )
    group.add_argument(
        "-q", "--quiet", action="count", default=default, help="only errors on stderr"
    )


def _no_progress(group: argparse._ArgumentGroup, default: object) -> None:
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default,
        help="no progress bar (it is also off when stderr is not a terminal)",
    )


OptionAdder = Callable[[argparse._ArgumentGroup, object], None]
# Each global option: how to add it (to a group, with a default), and the values it
# leaves when not given, by dest.
GLOBAL_OPTIONS: dict[str, tuple[OptionAdder, dict[str, object]]] = {
    "verbosity": (_verbosity, {"verbose": 0, "quiet": 0}),
    "base_url": (_base_url, {"base_url": None}),
    "sandbox": (_sandbox, {"sandbox": False}),
    "state": (_state, {"state": None}),
    "no_progress": (_no_progress, {"no_progress": False}),
}
DEFAULTS: dict[str, object] = {
    dest: value for _, defaults in GLOBAL_OPTIONS.values() for dest, value in defaults.items()
}


def common(*names: str) -> list[argparse.ArgumentParser]:
    """The parents of a command that takes ``-v``/``-q`` and the global options ``names``.

    Their defaults are SUPPRESS, so that a value given before the command's name (which
    the top-level parser holds, with the real defaults) is not overwritten."""
    parents = []
    for name in ("verbosity", *names):
        parent = argparse.ArgumentParser(add_help=False)
        GLOBAL_OPTIONS[name][0](parent.add_argument_group("global options"), argparse.SUPPRESS)
        parents.append(parent)
    return parents


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hifly-batch",
        description="Turn a YAML manifest into finished HiFly digital-human videos.",
        epilog="example:\n  hifly-batch --sandbox run manifests/quickstart.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hifly-batch {__version__}")
    group = parser.add_argument_group(
        "global options",
        "given before the command's name, or after it; each only to the commands it names",
    )
    for add, _ in GLOBAL_OPTIONS.values():
        add(group, None)
    parser.set_defaults(**DEFAULTS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"hifly_batch.commands.{name}")
        module.register(subparsers, common)
    for action in group._group_actions:  # say who takes each, now that all are known
        action.help = f"{action.help} [{', '.join(takers(parser, action.dest))}]"
    return parser


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's own parser (the ones that run something), by its name
    (``"state copy"``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub.get_default("handler") is not None:
                    found[name] = sub
                found.update({f"{name} {n}": p for n, p in commands_of(sub).items()})
    return found


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions}


def takers(parser: argparse.ArgumentParser, dest: str) -> list[str]:
    """The commands that take the global option whose value goes to ``dest``."""
    commands = commands_of(parser)
    every = [name for name, sub in commands.items() if dest in _dests(sub)]
    return ["every command"] if len(every) == len(commands) else every


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, refusing (exit 2) a global option given to a command it
    means nothing to, before the command's name or after it, and saying who takes it."""
    args, extras = parser.parse_known_args(argv)
    name, command = next(
        (n, p) for n, p in commands_of(parser).items() if p.get_default("handler") is args.handler
    )
    own = _dests(command)
    options = {o: a for a in parser._actions for o in a.option_strings if a.dest in DEFAULTS}
    given_after = (options.get(extra.split("=", 1)[0]) for extra in extras)
    for action in (a for a in given_after if a is not None and a.dest not in own):
        _refuse(parser, command, name, action)
    for action in options.values():
        if action.dest not in own and getattr(args, action.dest) != DEFAULTS[action.dest]:
            _refuse(parser, command, name, action)
    if extras:
        command.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _refuse(
    parser: argparse.ArgumentParser,
    command: argparse.ArgumentParser,
    name: str,
    action: argparse.Action,
) -> None:
    option = "/".join(action.option_strings)
    command.error(
        f"{name} takes no {option}; the commands that take it: "
        f"{', '.join(takers(parser, action.dest))}"
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; returns its exit code (SPEC §4)."""
    try:
        args = parse(build_parser(), argv)  # (imports every command: takes a moment)
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
    except RehearsalOnly as exc:  # say the command that reads what there is
        again = with_option(sys.argv[1:] if argv is None else argv, args.command, "--sandbox")
        console.err(f"hifly-batch: error: {exc}:\n  {again}")
        return exc.exit_status
    except HiflyBatchError as exc:
        console.err(f"hifly-batch: error: {exc}")
        return exc.exit_status
    except Exception:
        return _crash(os.environ if env is None else env)


def with_option(argv: Sequence[str], command: str, option: str) -> str:
    """The command line ``argv`` again, as a shell line, with ``option`` after the
    command's name."""
    words = list(argv)
    at = words.index(command) + 1 if command in words else 0
    return shlex.join(["hifly-batch", *words[:at], option, *words[at:]])


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
