"""A render's budget (SPEC §3): no template may build more than 1 MB of text, loop more
than 100,000 times or run for more than about a second, so that ``validate`` and
``plan`` stay within a few hundred MB and seconds whatever a template does.

Each render runs inside :func:`rendering`, which holds its count of loop turns, of
characters built and its clock; the guards where costs arise (:mod:`bounds`) spend from
it. The limits hold per render (one field of one row), and a template's renders share
a time allowance too: about a second plus ``ROW_SECONDS`` a render, so a template that
takes a little under a second for each of many rows is refused after a second or two,
not after one second a row.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterable, Iterator

MAX_TEXT = 1_000_000  # characters a render (or one value in it) may hold
# Characters (or list elements) one render may build in all, over every sized
# operation: ten values at the limit. A script's template builds a few thousand; at
# 4 bytes a character this keeps a render's texts within about 40 MB.
MAX_BUILT = 10_000_000
MAX_LOOPS = 100_000  # loop turns in one render
MAX_BITS = 1_000_000  # a number a power or a product may make
MAX_SECONDS = 1.0  # one render's time
# A template's average time a render over many rows: a script's template takes well
# under a millisecond, so this is a hundred times that and more.
ROW_SECONDS = 0.002
# What all the templates of a manifest may take together: a first few seconds, then on
# average a tenth of a template's own allowance a render (an ordinary field takes 20-30
# µs). Thirty templates each just inside its own second, or 90,000 renders each just
# inside its own 2 ms, would otherwise take minutes.
CAMPAIGN_SECONDS = 3.0
CAMPAIGN_ROW_SECONDS = 0.00025


class RenderLimit(Exception):
    """A render went past a limit; the message says which."""


class OutOfTime(RenderLimit):
    """A render ran past MAX_SECONDS."""


class Spend:
    """The time renders have taken (one template's, or a whole manifest's), and the
    fault that ended them: once out of time, a template is not run again (its later rows
    get the fault). ``first``: seconds allowed before the average counts; ``what``: who
    spent them, in a message."""

    def __init__(
        self,
        first: float = MAX_SECONDS,
        what: str = "the template",
        per_render: float = ROW_SECONDS,
    ) -> None:
        self.first = first
        self.what = what
        self.per_render = per_render
        self.seconds = 0.0
        self.renders = 0
        self.fault: Exception | None = None

    def allowance(self) -> float:
        """Seconds the next render may take: at most MAX_SECONDS, less once the renders so
        far took more than ``per_render`` each on average beyond the first seconds."""
        shared = self.first + self.per_render * (self.renders + 1) - self.seconds
        return min(MAX_SECONDS, shared)

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.renders += 1

    def out_of_time(self, more: float) -> OutOfTime:
        """The fault of a render that took ``more`` seconds past the ones spent."""
        spent, renders = self.seconds + more, self.renders + 1
        return OutOfTime(
            f"{self.what} took {spent:.1f} s over {renders:,} renders, "
            f"{1000 * spent / renders:.1f} ms each; {self.what} may take "
            f"{1000 * self.per_render:g} ms a render on average over many rows (an ordinary "
            "field takes a few hundredths of a millisecond)"
        )


_CAMPAIGN: contextvars.ContextVar[Spend | None] = contextvars.ContextVar("campaign", default=None)


@contextlib.contextmanager
def campaign() -> Iterator[None]:
    """The renders within share one manifest's allowance (:data:`CAMPAIGN_SECONDS`, then
    :data:`CAMPAIGN_ROW_SECONDS` a render), as well as each its template's."""
    spend = Spend(CAMPAIGN_SECONDS, "the manifest's templates", CAMPAIGN_ROW_SECONDS)
    token = _CAMPAIGN.set(spend)
    try:
        yield
    finally:
        _CAMPAIGN.reset(token)


class _Budget:
    def __init__(self, spend: Spend) -> None:
        self.turns = 0
        self.built = 0
        self.spends = [s for s in (spend, _CAMPAIGN.get()) if s is not None]
        self.started = time.monotonic()
        self.deadline = self.started + min(s.allowance() for s in self.spends)
        if self.deadline <= self.started:  # the renders before used up the allowance
            raise self._out_of_time(self.started)

    def turn(self) -> None:
        self.turns += 1
        if self.turns > MAX_LOOPS:
            raise RenderLimit(f"the template loops more than {MAX_LOOPS:,} times")
        if self.turns % 1024 == 0:
            self.tick()

    def build(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            raise RenderLimit(
                f"the template builds more than {MAX_BUILT:,} characters in all "
                f"(each value at most {MAX_TEXT:,})"
            )

    def tick(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise self._out_of_time(now)

    def _out_of_time(self, now: float) -> OutOfTime:
        more = now - self.started
        if more >= MAX_SECONDS:
            return OutOfTime(f"the template runs for more than {MAX_SECONDS:g} s")
        spend = min(self.spends, key=lambda s: s.allowance())  # the one used up
        return spend.out_of_time(more)

    def close(self) -> None:
        elapsed = time.monotonic() - self.started
        for spend in self.spends:
            spend.add(elapsed)


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


@contextlib.contextmanager
def rendering(spend: Spend) -> Iterator[None]:
    """One render's budget of loop turns, characters and time, its time added to
    ``spend`` (and to the manifest's, within :func:`campaign`); raises
    :class:`OutOfTime` at the start when either has no time left and at the end when the
    render overran (it may never have looked at the clock)."""
    budget = _Budget(spend)
    token = _BUDGET.set(budget)
    try:
        yield
        budget.tick()
    finally:
        _BUDGET.reset(token)
        budget.close()


def tick() -> None:
    """Look at the clock (from every call and filter a template uses)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def turn() -> None:
    """Count one loop turn against the render's budget."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.turn()


def joined(chunks: Iterable[str]) -> str:
    """The output of a render, or of a block that captures it (``{% set %}``, a macro,
    ``caller()``), refused once it passes MAX_TEXT, and counted toward MAX_BUILT."""
    size, parts = 0, []
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_TEXT:
            raise RenderLimit(f"the template makes more than {MAX_TEXT:,} characters")
        parts.append(chunk)
    check_size(size, "the template")
    return "".join(parts)


def check_size(size: int, what: str) -> None:
    """A value of ``size`` characters (or elements) about to be built: refused past
    MAX_TEXT, and counted toward the render's MAX_BUILT."""
    if size > MAX_TEXT:
        raise RenderLimit(f"{what} would make {size:,} characters, more than {MAX_TEXT:,}")
    budget = _BUDGET.get()
    if budget is not None:
        budget.build(size)
