"""The worker pool grows only when queued work waits on threads stuck in calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from hifly_batch.runner.workers import WorkerPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_pool(clock: Clock) -> Iterator[Callable[[int], WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(most: int) -> WorkerPool:
        pools.append(WorkerPool(most, patience=0.02, clock=clock))
        return pools[-1]

    yield make
    for pool in pools:
        pool.shutdown(wait=True)


def drain(done: threading.Semaphore, count: int) -> None:
    """Wait until ``count`` more jobs have run."""
    for _ in range(count):
        assert done.acquire(timeout=10), "a job never ran"


def test_quick_jobs_share_one_thread(make_pool: Callable[[int], WorkerPool], clock: Clock) -> None:
    pool = make_pool(8)
    done = threading.Semaphore(0)
    for _ in range(50):
        for _ in range(4):
            pool.submit(done.release)
        pool.tend()
        drain(done, 4)
        clock.now += 0.01
        assert pool.tend() is None
    assert pool.size == 1


def test_work_waiting_on_a_stuck_thread_starts_more_threads(
    make_pool: Callable[[int], WorkerPool], clock: Clock
) -> None:
    pool = make_pool(3)
    release, started, done = threading.Event(), threading.Event(), threading.Semaphore(0)

    def stuck() -> None:
        started.set()
        release.wait(10)

    pool.submit(stuck)
    assert started.wait(10)
    for _ in range(4):
        pool.submit(done.release)

    clock.now += 0.015
    assert pool.tend() == pytest.approx(0.005)  # not yet: asks to be woken then
    assert pool.size == 1

    clock.now += 0.01
    assert pool.tend() is None
    assert pool.size == 3  # one per waiting job, up to the ceiling
    drain(done, 4)  # ran while the first thread is still stuck
    assert not release.is_set()

    release.set()


def test_nothing_waiting_means_nothing_to_tend(make_pool: Callable[[int], WorkerPool]) -> None:
    pool = make_pool(4)
    assert pool.tend() is None
    assert pool.size == 0


def test_shutdown_drops_queued_jobs_and_refuses_new_ones(
    make_pool: Callable[[int], WorkerPool],
) -> None:
    pool = make_pool(1)
    started, release, ran = threading.Event(), threading.Event(), []
    pool.submit(lambda: (started.set(), release.wait(10)))
    pool.submit(ran.append, "queued")
    assert started.wait(10)
    pool.shutdown(wait=False)
    release.set()
    pool.shutdown(wait=True)
    assert ran == []
    with pytest.raises(RuntimeError):
        pool.submit(ran.append, "late")
