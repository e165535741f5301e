"""When to poll a task: learned from the tasks of the same kind already finished.

Pure logic: times are seconds since the task was created, nothing here reads
a clock.

Before any task of a kind has finished, polls start at ``poll_interval`` and
the gaps grow geometrically up to ``poll_max``. Once tasks finish, the first
poll aims at a high quantile of their durations, tracked by stochastic
approximation (Robbins–Monro): a first poll that finds the task done nudges
the target earlier, one that finds it still running moves it later, in
proportions that settle where a fraction ``miss_rate`` of first polls come
too early. This learns from what the polls observe without ever needing the
exact finish time, which polls cannot see: an estimate built from the times
tasks were *seen* done would drift late. A task not done at its first poll
is polled again after a short gap scaled to the target, then with growing
gaps.

With callbacks (``run --callbacks``), a task is queried when its callback
comes; ``Backstop`` says when to query one whose callback may have been lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

GROWTH = 1.5  # gap multiplier while nothing is known, and after repeated misses
MISS_RATE = 0.3  # share of first polls allowed to come before the task is done
RETRY_FRACTION = 0.05  # gap after a missed first poll, as a share of the target
MIN_GAP = 0.02
STEP_START = 0.15
STEP_FLOOR = 0.01
HEARD_WINDOW = 50  # callbacks per kind the backstop remembers: an outlier ages out
BACKSTOP_MARGIN = 1.05  # the backstop comes this much after the latest callback
HEARD_MIN = 10  # callbacks of a kind heard before their latest is trusted as a bound


@dataclass
class _Learned:
    target: float  # seconds from create to the first poll
    seen: int = 1
    ceiling: float = 0.0  # the latest time any task was seen finished: never aim later


@dataclass
class PollPlanner:
    """Poll times per kind of task; ``observe`` teaches it, ``next_poll`` asks it."""

    poll_interval: float
    poll_max: float
    miss_rate: float = MISS_RATE
    _kinds: dict[str, _Learned] = field(default_factory=dict)

    def first_poll(self, kind: str) -> tuple[float, bool]:
        """Seconds after the create to poll first, and whether that time was learned."""
        learned = self._kinds.get(kind)
        if learned is None:
            return self.poll_interval, False
        return self._bounded(learned.target), self.poll_interval < learned.target < self.poll_max

    def next_poll(self, kind: str, polled_at: float, previous_gap: float | None) -> float:
        """Seconds after the create for the poll after one at ``polled_at`` found it running.

        ``previous_gap`` is the gap that led to that poll (None after the first).
        """
        learned = self._kinds.get(kind)
        if previous_gap is None and learned is not None:
            gap = RETRY_FRACTION * learned.target
        elif previous_gap is None:
            gap = polled_at * (GROWTH - 1) or self.poll_interval
        else:
            gap = previous_gap * GROWTH
        return polled_at + min(self.poll_max, max(MIN_GAP, gap))

    def observe(
        self,
        kind: str,
        *,
        learned_first_poll: bool,
        done_at_first_poll: bool,
        finished_within: tuple[float, float],
    ) -> None:
        """Learn from one finished task.

        ``learned_first_poll``: its first poll came at the learned target (not
        a default or a bound), so its outcome says which side of the target
        the task fell; ``finished_within``: the last poll that saw it running
        (0 if none) and the one that saw it finished, in seconds since create.
        """
        low, high = finished_within
        learned = self._kinds.get(kind)
        if learned is None:
            self._kinds[kind] = _Learned(target=(low + high) / 2 if low > 0 else high)
            return
        learned.ceiling = max(learned.ceiling, high)
        if not learned_first_poll:
            return
        learned.seen += 1
        step = learned.target * _step_size(learned.seen)
        if done_at_first_poll:
            learned.target -= step * self.miss_rate
        else:
            learned.target += step * (1 - self.miss_rate)
        learned.target = min(learned.ceiling, max(MIN_GAP, learned.target))

    def _bounded(self, seconds: float) -> float:
        return min(self.poll_max, max(self.poll_interval, seconds))


def _step_size(seen: int) -> float:
    """Relative step: larger while little is known, settling to a floor that tracks drift."""
    return max(STEP_FLOOR, STEP_START / seen**0.5)


@dataclass
class Backstop:
    """With callbacks: when to query a task in case its callback was lost.

    A little (``BACKSTOP_MARGIN``) after the latest of the last ``HEARD_WINDOW``
    callbacks of its kind came, counted from each task's create, so that a lost
    callback costs a fraction of a task's time. Until ``HEARD_MIN`` have come, at
    ``poll_max``: the latest of a few is no bound on the rest, and a backstop that
    finds a task running costs a call and a wait of ``poll_max`` (a misconfigured
    callback URL also polls at ``poll_max``, as SPEC §5 says). Never before
    ``poll_interval``. Callback latency is in what it learns: it measures
    arrivals, not finishes.
    """

    poll_interval: float
    poll_max: float
    _heard: dict[str, deque[float]] = field(default_factory=dict)

    def heard(self, kind: str, after: float) -> None:
        """A task of ``kind`` was confirmed finished by the query its callback caused,
        the callback having come ``after`` seconds since its create."""
        self._heard.setdefault(kind, deque(maxlen=HEARD_WINDOW)).append(after)

    def has_heard(self, kind: str) -> bool:
        """Whether a callback of a task of ``kind`` has come (and its query confirmed it)."""
        return kind in self._heard

    def first_poll(self, kind: str) -> float:
        """Seconds after the create to query a task of ``kind`` if no callback came."""
        heard = self._heard.get(kind)
        if heard is None or len(heard) < HEARD_MIN:
            return self.poll_max
        return max(self.poll_interval, BACKSTOP_MARGIN * max(heard))
