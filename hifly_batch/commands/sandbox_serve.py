"""``hifly-batch sandbox serve``: the local emulation of the API, until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from hifly_batch import console
from hifly_batch.api.connect import ACCOUNT_SANDBOX_DIR, BASE_URL_VARIABLE, TOKEN_VARIABLE
from hifly_batch.errors import UsageError


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        parents=common(),
        help="run the local sandbox API",
        description="The sandbox: the HiFly API emulated on 127.0.0.1, for rehearsals and tests.",
        epilog="example:\n  hifly-batch sandbox serve --port 8800 --task-seconds 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        parents=common(),
        help="serve the sandbox API on 127.0.0.1 until Ctrl-C",
        description=(
            "Serve the sandbox API on 127.0.0.1 until Ctrl-C. It first prints two shell "
            "lines, export HIFLY_BASE_URL=... and export HIFLY_TOKEN=..., so another "
            "terminal can point any client at it."
        ),
        epilog=(
            "examples:\n  hifly-batch sandbox serve\n"
            "  hifly-batch sandbox serve --faults http_500=0.1,drop=0.05,seed=7\n"
            "  hifly-batch sandbox serve --faults http_429=0.2,retry_after_seconds=0,"
            "gateway_after_create=0.05\n"
            "  hifly-batch sandbox serve --callback-url http://127.0.0.1:8900/ "
            "--faults callback_drop=0.3,seed=1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _serve_options(serve)
    serve.set_defaults(handler=_handle)


def _serve_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--port", type=_port, default=0, help="TCP port (default: a free one)")
    serve.add_argument(
        "--data",
        type=Path,
        default=ACCOUNT_SANDBOX_DIR,
        metavar="DIR",
        help=f"folder that keeps the sandbox's world (default: {ACCOUNT_SANDBOX_DIR})",
    )
    serve.add_argument(
        "--task-seconds", type=float, metavar="S", help="base time from create to finish"
    )
    serve.add_argument(
        "--task-jitter", type=float, metavar="S", help="random extra time per task, seeded"
    )
    serve.add_argument(
        "--faults",
        metavar="SPEC",
        help="KEY=VALUE,... of seeded fault injection: rates from 0 to 1 of http_500, "
        "http_429 (answered with Retry-After: retry_after_seconds, default 1), drop, "
        "drop_after_create, gateway_after_create (the task is made, the client gets 502 "
        "or 504), put_fail (an upload PUT gets 500, nothing stored), slow (by "
        "slow_seconds, default 2), malformed_json, task_fail, expired_url, callback_drop (a "
        "task's callback is lost, never sent); and the seed (see the examples)",
    )
    serve.add_argument("--credits", type=int, help="credit balance of a new world")
    serve.add_argument(
        "--max-generating", type=int, metavar="N", help="works generating at once (code 1001)"
    )
    serve.add_argument(
        "--callback-url",
        metavar="URL",
        help="POST each finished task's callback here (loopback only), e.g. a run's "
        "--callbacks receiver; a non-200 answer or a refused connection is retried for 300 s",
    )


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return serve(
        args.data,
        port=args.port,
        task_seconds=args.task_seconds,
        task_jitter=args.task_jitter,
        faults=args.faults,
        credits=args.credits,
        max_generating=args.max_generating,
        callback_url=args.callback_url,
    )


def serve(
    data: Path,
    *,
    port: int = 0,
    task_seconds: float | None = None,
    task_jitter: float | None = None,
    faults: str | None = None,
    credits: int | None = None,
    max_generating: int | None = None,
    callback_url: str | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM; returns 0 after a clean stop."""
    from hifly_batch.sandbox import Sandbox, SandboxConfig, parse_faults

    settings: dict[str, Any] = {
        "task_seconds": task_seconds,
        "task_jitter": task_jitter,
        "credits": credits,
        "max_generating": max_generating,
        "callback_url": callback_url,
    }
    try:
        if faults:
            settings["faults"] = parse_faults(faults)
        config = SandboxConfig(**{k: v for k, v in settings.items() if v is not None})
        sandbox = Sandbox(data, config, port=port)
    except ValueError as exc:
        raise UsageError(f"sandbox serve: {exc}") from None
    stop = threading.Event()
    try:
        sandbox.start()
    except OSError as exc:  # the port is taken, or not ours to bind
        sandbox.stop()
        raise UsageError(
            f"sandbox serve: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
            "give another --port, or leave it out for a free one"
        ) from None
    with sandbox:
        console.out(f"export {BASE_URL_VARIABLE}={shlex.quote(sandbox.base_url)}")
        console.out(f"export {TOKEN_VARIABLE}={shlex.quote(sandbox.token)}")
        console.info(f"sandbox: serving {sandbox.base_url}, world in {data}; Ctrl-C stops it")
        _until_signalled(stop)
    return 0


def _until_signalled(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _port(text: str) -> int:
    """A TCP port number for argparse: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: ports are 0 to 65535")
    return port
