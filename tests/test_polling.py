"""The poll planner: defaults before learning, bounds, and convergence on a known distribution."""

from __future__ import annotations

import itertools
import random

import pytest

from hifly_batch.runner.polling import (
    BACKSTOP_MARGIN,
    HEARD_MIN,
    HEARD_WINDOW,
    Backstop,
    PollPlanner,
)


def test_unknown_kind_polls_at_poll_interval_then_grows_to_poll_max() -> None:
    planner = PollPlanner(poll_interval=0.25, poll_max=2.0)
    at, learned = planner.first_poll("video")
    times, gap = [at], None
    for _ in range(12):
        nxt = planner.next_poll("video", times[-1], gap)
        gap = nxt - times[-1]
        times.append(nxt)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert (at, learned) == (0.25, False)
    assert gaps == sorted(gaps) and max(gaps) == pytest.approx(2.0)


def first_target(planner: PollPlanner, kind: str) -> float:
    return planner.first_poll(kind)[0]


def train(planner: PollPlanner, durations: list[float], kind: str = "video") -> float:
    """Feed tasks one at a time as the runner would; returns the share of first-poll misses."""
    misses = 0
    for d in durations:
        at, learned = planner.first_poll(kind)
        low, gap = 0.0, None
        while at < d:
            low, nxt = at, planner.next_poll(kind, at, gap)
            gap, at = nxt - at, nxt
        misses += gap is not None
        planner.observe(
            kind,
            learned_first_poll=learned,
            done_at_first_poll=gap is None,
            finished_within=(low, at),
        )
    return misses / len(durations)


@pytest.mark.parametrize(("low", "high"), [(1.0, 1.2), (3.0, 6.0), (20.0, 25.0)])
def test_first_poll_settles_at_a_high_quantile(low: float, high: float) -> None:
    rng = random.Random(7)
    planner = PollPlanner(poll_interval=0.25, poll_max=60.0, miss_rate=0.3)
    train(planner, [rng.uniform(low, high) for _ in range(400)])
    late_misses = train(planner, [rng.uniform(low, high) for _ in range(400)])
    target = first_target(planner, "video")
    assert low + 0.45 * (high - low) < target <= high * 1.05
    assert 0.1 < late_misses < 0.5


def test_kinds_learn_apart() -> None:
    rng = random.Random(3)
    planner = PollPlanner(poll_interval=0.25, poll_max=60.0)
    train(planner, [rng.uniform(1.0, 1.2) for _ in range(100)], kind="audio")
    train(planner, [rng.uniform(10.0, 12.0) for _ in range(100)], kind="video")
    assert first_target(planner, "audio") < 1.3 < 9.0 < first_target(planner, "video")


def test_first_poll_never_earlier_than_poll_interval_nor_later_than_poll_max() -> None:
    planner = PollPlanner(poll_interval=5.0, poll_max=60.0)
    train(planner, [0.5] * 20, kind="fast")
    train(planner, [600.0] * 5, kind="slow")
    assert first_target(planner, "fast") == 5.0
    assert first_target(planner, "slow") == 60.0


def test_a_task_seen_late_does_not_drag_the_target_when_its_poll_was_not_learned() -> None:
    planner = PollPlanner(poll_interval=0.25, poll_max=60.0)
    train(planner, [1.0] * 30)
    before = first_target(planner, "video")
    planner.observe(
        "video", learned_first_poll=False, done_at_first_poll=False, finished_within=(30.0, 45.0)
    )
    assert first_target(planner, "video") == before


# The backstop, with callbacks ---------------------------------------------------------


def test_the_backstop_is_poll_max_until_enough_callbacks_have_come() -> None:
    backstop = Backstop(poll_interval=5.0, poll_max=60.0)
    assert backstop.first_poll("video") == 60.0
    for after in range(HEARD_MIN - 1):
        backstop.heard("video", 100.0 + after)
    assert backstop.first_poll("video") == 60.0  # a few are no bound on the rest
    backstop.heard("video", 100.0)
    assert backstop.first_poll("video") == pytest.approx(BACKSTOP_MARGIN * 108.0)
    assert backstop.first_poll("avatar") == 60.0  # kinds learn apart


def test_the_backstop_follows_the_latest_of_the_recent_callbacks() -> None:
    """An outlier sets the bound while it is recent, then ages out of the window."""
    backstop = Backstop(poll_interval=0.25, poll_max=2.0)
    for _ in range(HEARD_MIN):
        backstop.heard("video", 1.0)
    backstop.heard("video", 30.0)
    assert backstop.first_poll("video") == pytest.approx(BACKSTOP_MARGIN * 30.0)
    for _ in range(HEARD_WINDOW - 1):
        backstop.heard("video", 1.0)
    assert backstop.first_poll("video") == pytest.approx(BACKSTOP_MARGIN * 30.0)
    backstop.heard("video", 1.0)
    assert backstop.first_poll("video") == pytest.approx(BACKSTOP_MARGIN * 1.0)


def test_the_backstop_is_never_before_poll_interval() -> None:
    backstop = Backstop(poll_interval=5.0, poll_max=60.0)
    for _ in range(HEARD_MIN):
        backstop.heard("video", 0.5)
    assert backstop.first_poll("video") == 5.0
