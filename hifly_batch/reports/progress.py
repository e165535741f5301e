"""The run's progress bar and its closing summary table."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable

from tqdm import tqdm

from hifly_batch.reports.csv_report import report_status
from hifly_batch.runner.state import Record


class ProgressBar:
    """One tqdm bar on stderr with live counts; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None

    def update(self, counts: dict[str, int], total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, unit="item", file=sys.stderr, dynamic_ncols=True)
        settled = counts["done"] + counts["failed"]
        self._bar.update(settled - self._bar.n)
        self._bar.set_postfix(
            done=counts["done"],
            running=counts["running"],
            queued=counts["queued"],
            failed=counts["failed"],
            refresh=False,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


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
