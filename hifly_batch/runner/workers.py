"""The one pool of HTTP workers: as many threads as the calls under way need.

Against a service that answers in a millisecond one thread keeps up, and every
extra thread only adds CPU: they contend for the interpreter lock at each
system call. Against one that takes seconds (a download over the internet, a
slow create) one slow call must not hold the others up. So the pool starts
with one thread and adds threads only when work is kept waiting because every
thread is stuck in a call: when the oldest queued job has waited ``patience``
seconds and no thread has taken a job in that time. It never exceeds ``most``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

log = logging.getLogger("hifly_batch.runner.workers")

PATIENCE = 0.02  # seconds queued work may wait on busy threads before more are started


class WorkerPool:
    """Run jobs (callables that handle their own errors) on a growing set of threads.

    The owner calls ``tend`` whenever it wakes, and wakes again no later than
    ``tend`` asks: that is when the pool decides whether to grow.
    """

    def __init__(
        self,
        most: int,
        *,
        name: str = "hifly-http",
        patience: float = PATIENCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most = max(1, most)
        self.name = name
        self.patience = patience
        self.clock = clock
        self._cond = threading.Condition()
        self._queued: deque[tuple[float, Callable[[], object]]] = deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._last_take = clock()
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._queued.append((self.clock(), partial(fn, *args)))
            if self._idle:
                self._cond.notify()
            elif not self._threads:
                self._start(1)

    def tend(self) -> float | None:
        """Add threads if queued work waits on stuck ones; returns seconds until the
        next look is due, or None while nothing waits."""
        with self._cond:
            if not self._queued or self.size >= self.most:
                return None
            now = self.clock()
            stuck_since = max(self._queued[0][0], self._last_take)
            if now - stuck_since < self.patience:
                return stuck_since + self.patience - now
            added = min(len(self._queued), self.most - self.size)
            self._start(added)
            log.info(
                "calls wait on busy workers: %d more, %d HTTP workers in all", added, self.size
            )
            return None

    def shutdown(self, *, wait: bool) -> None:
        """Drop the queued jobs and let the threads end after their current one."""
        with self._cond:
            self._closed = True
            self._queued.clear()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _start(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{self.size}", daemon=False
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._queued:
                    return
                _, job = self._queued.popleft()
                self._last_take = self.clock()
            job()
