"""The Sandbox: a world on disk served over real HTTP on a loopback address."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from hifly_batch.apispec import TaskStatus
from hifly_batch.sandbox.callbacks import CallbackSender
from hifly_batch.sandbox.config import Faults, SandboxConfig, is_loopback_host
from hifly_batch.sandbox.endpoints import Api
from hifly_batch.sandbox.faults import decide_callback_drop
from hifly_batch.sandbox.records import Counters, TaskRow, TaskTime
from hifly_batch.sandbox.routes import App
from hifly_batch.sandbox.server import SandboxHTTPServer
from hifly_batch.sandbox.tasks import TaskViews
from hifly_batch.sandbox.world import World


class Sandbox:
    """A local emulation of the HiFly API V2; ``with Sandbox(dir) as sb:`` serves it."""

    def __init__(
        self,
        data_dir: Path,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not is_loopback_host(host):
            raise ValueError(
                f"sandbox host {host!r} is not a loopback address; it serves 127.0.0.1, "
                "::1 or localhost only"
            )
        self.data_dir = Path(data_dir)
        self.config = config or SandboxConfig()
        self.host = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
        self.port = port
        self.clock = clock
        self.base_url = ""
        self._world: World | None = World.open(
            self.data_dir, token=self.config.token, credits=self.config.credits
        )
        self.token = self.config.token or self._world.token()
        self._views = TaskViews(self._world, self._world.secret(), clock)
        self._views.url_ttl = self.config.url_ttl
        self._api = Api(self._world, self._views, self.config, clock)
        self._app = App(self._world, self._api, self.token, self.config.faults, clock)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._callbacks: CallbackSender | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind, serve in a background thread, and start the callback sender."""
        if self._server is not None:
            return self
        if self._world is None:
            raise RuntimeError("a stopped Sandbox cannot be started again; make a new one")
        server = SandboxHTTPServer((self.host, self.port), self._app, identify=self.config.identify)
        port = server.server_address[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{shown}:{port}"
        self._views.base_url = self._api.base_url = self.base_url
        self._api.own_netlocs = frozenset({f"{shown}:{port}", f"localhost:{port}"})
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        self._start_callbacks()
        return self

    def _start_callbacks(self) -> None:
        world = self._world
        url = self.config.callback_url
        if url is None or world is None:
            return
        sender = CallbackSender(
            url,
            self.config.callback_retry_seconds,
            self.clock,
            self._callback_payload,
            world.mark_callback_sent,
            lost=self._callback_lost,
        )
        now = self.clock()
        for task_id, finish_at in world.callbacks_due():
            if finish_at + self.config.callback_retry_seconds >= now:
                sender.schedule(task_id, finish_at)
        self._api.on_created = lambda task: sender.schedule(task.task_id, task.finish_at)
        self._callbacks = sender
        sender.start()

    def _callback_payload(self, task_id: str) -> dict[str, Any] | None:
        task = self._world.task(task_id) if self._world is not None else None
        if task is None or self._views.status(task) not in (TaskStatus.DONE, TaskStatus.FAILED):
            return None
        return self._views.callback_payload(task)

    def _callback_lost(self, task_id: str) -> bool:
        """The ``callback_drop`` fault: a lost message is counted and settled, never sent."""
        world = self._world
        if world is None or not decide_callback_drop(self.config.faults, task_id):
            return False
        world.bump("faults", "callback_drop")
        world.mark_callback_sent(task_id)
        return True

    def stop(self) -> None:
        """Stop serving, cut open connections, stop callbacks, close the world."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._callbacks is not None:
            self._callbacks.stop()
            self._callbacks = None
        if self._world is not None:
            self._world.close()
            self._world = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the world -----------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[World]:
        """The open world, or (after stop) a short-lived one on the same files."""
        if self._world is not None:
            yield self._world
            return
        world = World.open(self.data_dir, create=False)
        try:
            yield world
        finally:
            world.close()

    def counters(self) -> Counters:
        """Requests, recorded creates and injected faults, as persisted in the world."""
        with self._reading() as world:
            return world.counters()

    def task_times(self) -> list[TaskTime]:
        """Every task's creation and finish time, oldest first."""
        with self._reading() as world:
            return world.task_times()

    def credits(self) -> int:
        """The account's credit balance."""
        with self._reading() as world:
            return world.credits()

    def set_credits(self, n: int) -> None:
        """Set the account's credit balance."""
        with self._reading() as world:
            world.set_credits(n)

    def set_faults(self, faults: Faults) -> None:
        """Change the fault rates of the running sandbox."""
        self.config = dataclasses.replace(self.config, faults=faults)
        self._api.config = self.config
        self._app.faults = faults

    def task(self, task_id: str) -> TaskRow | None:
        """A task as recorded, with its params (for tests and diagnostics)."""
        with self._reading() as world:
            return world.task(task_id)

    def uploaded_bytes(self, file_id: str) -> bytes:
        """The bytes PUT for ``file_id`` (KeyError when unknown or never uploaded)."""
        with self._reading() as world:
            row = world.file(file_id)
            if row is None or row.kind != "upload" or not row.uploaded:
                raise KeyError(f"no uploaded file {file_id!r}")
            return (world.files_dir / row.stored_name).read_bytes()

    def output_bytes(self, task_id: str) -> bytes:
        """The output file of a finished task (KeyError when it has none yet)."""
        with self._reading() as world:
            task = world.task(task_id)
            if task is None or task.output_file is None:
                raise KeyError(f"task {task_id!r} has no output yet")
            return (world.files_dir / task.output_file).read_bytes()

    @staticmethod
    def read_counters(data_dir: Path) -> Counters:
        """The counters of the world in ``data_dir``, without starting a server."""
        world = World.open(Path(data_dir), create=False)
        try:
            return world.counters()
        finally:
            world.close()
