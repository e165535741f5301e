"""The run's progress bar and its closing summary table.

The bar is one line on stderr: ``settled/total``, the six counts of the run, the bar
itself and the time taken and left. It is laid out anew for the terminal's width at
each update: the counters always show, in words where there is room, shorter where
there is not, and the bar takes what is left (or is left out below ``MIN_BAR``)::

    13/20 12 done, 1 failed, 0 uncertain, 0 blocked, 4 running, 3 queued |███   | 00:12<00:20
    13/20 done=12 fail=1 unsure=0 block=0 run=4 queue=3 |██████      | 00:12<00:20
    13/20 d12 f1 u0 b0 r4 q3 |███████       |
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tqdm import tqdm

from hifly_batch.reports.csv_report import report_status
from hifly_batch.runner.scheduler import SETTLED
from hifly_batch.runner.state import Record

COUNTS = (*SETTLED, "running", "queued")  # the order they show in
SHORT = {"done": "done", "failed": "fail", "uncertain": "unsure", "blocked": "block",
         "running": "run", "queued": "queue"}  # fmt: skip
MIN_BAR = 10  # columns: a narrower bar is left out
REFRESH = 0.1  # seconds: the most often the line is drawn again for counts alone
# How the line may be laid out, most room first: (counters' form, with bar, with times).
LAYOUTS = (
    ("words", True, True),
    ("short", True, True),
    ("short", True, False),
    ("short", False, False),
    ("letters", True, False),
    ("letters", False, False),
)


def counters(counts: Mapping[str, int], form: str) -> str:
    """The six counts as ``words`` (``12 done, 1 failed, …``), ``short``
    (``done=12 fail=1 …``) or ``letters`` (``d12 f1 …``)."""
    if form == "words":
        return ", ".join(f"{counts[name]} {name}" for name in COUNTS)
    if form == "short":
        return " ".join(f"{SHORT[name]}={counts[name]}" for name in COUNTS)
    return " ".join(f"{name[0]}{counts[name]}" for name in COUNTS)


def bar_format(with_bar: bool, with_times: bool) -> str:
    """A tqdm ``bar_format`` with the counters as its ``desc``."""
    line = "{n_fmt}/{total_fmt} {desc}"
    if with_bar:
        line += " |{bar}|"
    return line + (" {elapsed}<{remaining}" if with_times else "")


def layout(counts: Mapping[str, int], width: int, meter: Mapping[str, Any]) -> tuple[str, str]:
    """The ``bar_format`` and counters (its ``desc``) of the first of ``LAYOUTS`` that fits
    ``width`` columns, with a bar of at least ``MIN_BAR``; the last one if none does.
    ``meter``: tqdm's ``format_meter`` arguments (``n``, ``total``, ``elapsed``, …)."""
    for form, with_bar, with_times in LAYOUTS:
        text = counters(counts, form)
        line = bar_format(with_bar, with_times)
        rest = {**meter, "prefix": text, "bar_format": line.replace("{bar}", ""), "ncols": None}
        room = width - len(_shown(rest))
        if room >= (MIN_BAR if with_bar else 0):
            return line, text
    return line, text


def render(counts: Mapping[str, int], total: int, width: int, elapsed: float = 0.0) -> str:
    """The line as the bar shows it in a terminal ``width`` columns wide."""
    settled = sum(counts[name] for name in SETTLED)
    meter = {"n": settled, "total": total, "elapsed": elapsed, "ncols": width}
    line, text = layout(counts, width, meter)
    return _shown({**meter, "prefix": text, "bar_format": line})


def _shown(meter: Mapping[str, Any]) -> str:
    return str(tqdm.format_meter(**meter))


class ProgressBar:
    """One line on stderr with live counts; silent when stderr is not a terminal.

    ``update`` takes what the scheduler reports (``on_progress``): the counts of
    ``COUNTS``, which add up to ``total``. The bar's position is the settled items."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None
        self._latest: tuple[Mapping[str, int], int] | None = None
        self._drawn = 0.0

    def update(self, counts: Mapping[str, int], total: int) -> None:
        if not self.enabled or total == 0:
            return
        self._latest = (dict(counts), total)
        if self._bar is None:
            self._bar = tqdm(total=total, unit="item", file=sys.stderr, leave=True,
                             mininterval=REFRESH, bar_format="{desc}")  # fmt: skip
        self._draw(self._bar, counts, total, final=False)

    def close(self) -> None:
        """Draw the last counts and leave the line on the terminal."""
        if self._bar is None:
            return
        if self._latest is not None:
            self._draw(self._bar, *self._latest, final=True)
        self._bar.close()
        self._bar = None

    def _draw(self, bar: tqdm, counts: Mapping[str, int], total: int, *, final: bool) -> None:
        settled = sum(counts[name] for name in SETTLED)
        width = _columns()
        meter = {**bar.format_dict, "n": settled, "total": total, "ncols": width}
        bar.bar_format, text = layout(counts, width, meter)
        bar.set_description_str(text, refresh=False)
        bar.ncols, bar.total = width, total
        now = time.monotonic()
        if settled > bar.n:
            printed = bar.last_print_n
            bar.update(settled - bar.n)  # feeds the time-left estimate; draws every REFRESH
            if bar.last_print_n != printed:
                self._drawn = now
        if final or now - self._drawn >= REFRESH:  # for counts that moved alone
            bar.refresh()
            self._drawn = now


def _columns() -> int:
    """The terminal's width less one column: a line that reaches the last column wraps
    at once in some terminals."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        columns = 80
    return max(1, columns - 1)


def summary_table(records: Iterable[Record]) -> str:
    """Items per section and report status, with totals."""
    table: dict[str, Counter[str]] = {}
    for record in records:
        table.setdefault(record.section, Counter())[report_status(record.status)] += 1
    statuses = [
        s
        for s in ("done", "failed", "uncertain", "blocked", "pending", "skipped")
        if any(c[s] for c in table.values())
    ]
    lines = [f"{'section':<8}" + "".join(f" {s:>9}" for s in statuses)]
    for section, counter in table.items():
        lines.append(f"{section:<8}" + "".join(f" {counter[s]:>9}" for s in statuses))
    totals = sum(table.values(), Counter())
    lines.append(f"{'total':<8}" + "".join(f" {totals[s]:>9}" for s in statuses))
    return "\n".join(lines)
