"""The review page: ``report.html`` beside ``report.csv``, one self-contained file.

A reviewer opens it in a browser: when it was written (and the run's span), a
summary (items per status, total duration), a status filter, and one card per
item with its key, status, rendered script, error and a player for its
downloaded output; failed, uncertain and blocked cards come first in each
section. Rows that a ``when`` filtered out make no item; a last section names
them. Media are linked by paths relative to the page, so the output folder can
be zipped and sent whole. The filter is a few lines of inline script: with
scripts off it is not shown, and every card is. Rendering is pure (records and
graph items in, HTML text out); only :func:`write` touches disk.
"""

from __future__ import annotations

import html
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from hifly_batch.core.graph import Item, ItemKind
from hifly_batch.files import write_atomically
from hifly_batch.manifest.model import SkippedRow
from hifly_batch.reports.csv_report import report_status
from hifly_batch.runner.state import Record

STATUSES = ("done", "failed", "uncertain", "blocked", "pending", "skipped")
# In each section these come first, so that failures are not lost among done items.
FIRST = ("failed", "uncertain", "blocked")
WHEN_FALSE = "when-false"  # the filter's name for the rows a ``when`` filtered out
# Works first: they are what a reviewer came for; the inputs follow.
SECTION_ORDER = ("videos", "audios", "avatars", "voices", "assets")
PLAYERS = {
    ItemKind.VIDEO_BY_TTS.value: "video",
    ItemKind.VIDEO_BY_AUDIO.value: "video",
    ItemKind.AUDIO_BY_TTS.value: "audio",
}

STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
  "PingFang SC", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; color: var(--ink);
  background: #f4f6fa; }
h1 { margin: 0 0 4px; font-size: 24px; }
h2 { margin: 28px 0 12px; font-size: 18px; }
.summary { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; padding: 0; }
.summary li { list-style: none; padding: 6px 12px; border-radius: 8px; background: #fff;
  border: 1px solid var(--line); }
.summary b { font-size: 18px; margin-right: 4px; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 16px; align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-left-width: 6px;
  border-radius: 10px; padding: 12px 14px; min-width: 0; }
.card header { display: flex; justify-content: space-between; gap: 8px;
  align-items: baseline; }
.card h3 { margin: 0; font-size: 16px; overflow-wrap: anywhere; }
.badge { flex: none; font-size: 12px; font-weight: 600; padding: 2px 8px;
  border-radius: 999px; text-transform: uppercase; letter-spacing: .03em; }
.meta { margin: 4px 0 8px; font-size: 13px; color: var(--muted); overflow-wrap: anywhere; }
.script { white-space: pre-wrap; margin: 8px 0; padding: 8px 10px; background: #f7f8fb;
  border-radius: 6px; font-size: 14px; }
.error { margin: 8px 0; padding: 8px 10px; border-radius: 6px; background: #fdecec;
  color: #8a1c1c; overflow-wrap: anywhere; }
video { display: block; width: 100%; max-height: 320px; background: #000;
  border-radius: 6px; }
audio { display: block; width: 100%; }
.done { border-left-color: #2e9d5b; } .done .badge { background: #e3f5ea; color: #1e6e3f; }
.failed { border-left-color: #d23b3b; } .failed .badge { background: #fde4e4; color: #9c1f1f; }
.uncertain { border-left-color: #d9941a; }
.uncertain .badge { background: #fdf1dc; color: #8a5a07; }
.blocked { border-left-color: #8a6fd1; } .blocked .badge { background: #eee8fb; color: #5130a8; }
.pending, .skipped { border-left-color: #9aa3b2; }
.pending .badge, .skipped .badge { background: #eceff4; color: #4a5263; }
[hidden] { display: none !important; }
.dates { margin: 0; color: var(--muted); font-size: 14px; }
.filter { display: flex; flex-wrap: wrap; gap: 6px; margin: 0 0 8px; }
.filter button { font: inherit; font-size: 13px; padding: 4px 12px; cursor: pointer;
  border: 1px solid var(--line); border-radius: 999px; background: #fff; color: var(--ink); }
.filter button[aria-pressed='true'] { background: var(--ink); border-color: var(--ink);
  color: #fff; }
.filtered-rows { margin: 0; padding-left: 20px; }
.filtered-rows li { margin: 2px 0; overflow-wrap: anywhere; }
"""

# The status filter: shows the cards (and skipped rows) of one status, hides the sections
# left empty, and keeps the choice in the address (``report.html#failed``). Without
# scripts the buttons stay hidden and every card shows.
SCRIPT = """
(function () {
  var nav = document.querySelector('nav.filter');
  if (!nav) return;
  var buttons = nav.querySelectorAll('button');
  function show(status) {
    document.querySelectorAll('section.group').forEach(function (group) {
      var shown = 0;
      group.querySelectorAll('[data-status]').forEach(function (member) {
        member.hidden = status !== 'all' && member.getAttribute('data-status') !== status;
        if (!member.hidden) shown += 1;
      });
      group.hidden = shown === 0;
    });
    buttons.forEach(function (button) {
      var on = button.getAttribute('data-filter') === status;
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
    });
  }
  buttons.forEach(function (button) {
    button.addEventListener('click', function () {
      var status = button.getAttribute('data-filter');
      show(status);
      var address = status === 'all' ? location.pathname + location.search : '#' + status;
      try { history.replaceState(null, '', address); }
      catch (e) { /* a page opened where the address cannot change */ }
    });
  });
  var wanted = decodeURIComponent(location.hash.slice(1));
  var known = nav.querySelector('button[data-filter="' + wanted + '"]') !== null;
  nav.hidden = false;
  show(known ? wanted : 'all');
})();
"""


def render(
    records: Iterable[Record],
    items: Mapping[str, Item],
    *,
    title: str,
    media_prefix: str = "",
    written: datetime | None = None,
    run_started: datetime | None = None,
    skipped: Sequence[SkippedRow] = (),
) -> str:
    """The whole page; ``media_prefix`` leads from the page's folder to the output folder.

    ``written``: when the page is written (an aware datetime; every time on the page
    is shown in its zone); ``run_started``: when the run that writes it began (None:
    not written by a run); ``skipped``: the rows ``when`` filtered out.
    """
    rows = list(records)
    run = (run_started, written) if run_started is not None and written is not None else None
    body = [f"<h1>{_e(title)}</h1>", dates(rows, written, run_started), _summary(rows, run)]
    body.append(filter_control(rows, skipped))
    for section, members in _by_section(rows):
        cards = (card(r, items.get(r.item), media_prefix) for r in failures_first(members))
        body.append(
            f"<section class='group' data-section='{_e(section)}'>"
            f"<h2>{_e(section)} <span class='muted'>({len(members)})</span></h2>"
            f"<div class='cards'>{''.join(cards)}</div></section>"
        )
    if skipped:
        body.append(skipped_section(skipped))
    return (
        "<!DOCTYPE html>\n<html lang='zh'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · review</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n"
    )


def dates(
    records: Sequence[Record], written: datetime | None, run_started: datetime | None = None
) -> str:
    """When the page was written and the run's span; without a run (the ``report``
    command), the span of the recorded work, first start to last finish, where known.
    Empty when ``written`` is None."""
    if written is None:
        return ""
    parts = [f"Written {_time(written)}"]
    if run_started is not None:
        parts.append(f"run {_span(run_started, written)}")
    elif (recorded := recorded_span(records)) is not None:
        first, last = (datetime.fromtimestamp(t, written.tzinfo) for t in recorded)
        parts.append(f"work recorded {_span(first, last)}")
    return f"<p class='dates'>{' · '.join(parts)}</p>"


def recorded_span(records: Iterable[Record]) -> tuple[float, float] | None:
    """The first recorded start and the last finish (epoch seconds); None without both."""
    rows = list(records)
    started = [r.started_at for r in rows if r.started_at is not None]
    finished = [r.finished_at for r in rows if r.finished_at is not None]
    return (min(started), max(finished)) if started and finished else None


def _span(start: datetime, end: datetime) -> str:
    """``<start> – <end> (3 min 6 s)``; the end's date only when it is another day."""
    shown = end.strftime("%H:%M:%S") if end.date() == start.date() else _stamp(end)
    seconds = max((end - start).total_seconds(), 0.0)
    return (
        f"{_time(start)} – <time datetime='{end.isoformat(timespec='seconds')}'>{shown}</time>"
        f" ({format_seconds(seconds)})"
    )


def _time(moment: datetime) -> str:
    return f"<time datetime='{moment.isoformat(timespec='seconds')}'>{_stamp(moment)}</time>"


def _stamp(moment: datetime) -> str:
    """``2025-06-01 14:03:07 UTC+08:00`` (the zone left out of a naive datetime)."""
    offset = moment.strftime("%z")
    zone = f" UTC{offset[:3]}:{offset[3:]}" if offset else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def _summary(records: list[Record], run: tuple[datetime, datetime] | None = None) -> str:
    """Items per status, then the total duration of the outputs and of the run (``run``:
    its start and end; None: from the first recorded start to the last finish)."""
    counts = Counter(report_status(r.status) for r in records)
    cells = [
        f"<li class='count' data-status='{s}'><b>{counts[s]}</b>{s}</li>"
        for s in STATUSES
        if counts[s]
    ]
    cells.append(f"<li class='count' data-status='total'><b>{len(records)}</b>items</li>")
    media = sum(r.duration_s or 0.0 for r in records)
    recorded = recorded_span(records)
    if run is not None:
        span = (run[1] - run[0]).total_seconds()
    else:
        span = recorded[1] - recorded[0] if recorded is not None else 0.0
    cells.append(f"<li class='duration'><b>{format_seconds(media)}</b>of video and audio</li>")
    cells.append(f"<li class='elapsed'><b>{format_seconds(max(span, 0.0))}</b>run time</li>")
    return "<ul class='summary'>" + "".join(cells) + "</ul>"


def filter_control(records: Sequence[Record], skipped: Sequence[SkippedRow] = ()) -> str:
    """One button per status present (and for the rows ``when`` filtered out), after
    "all"; hidden until the page's script shows it."""
    counts = Counter(report_status(r.status) for r in records)
    choices = [("all", f"all ({len(records)})")]
    order = dict.fromkeys((*FIRST, *STATUSES))  # failures first, as the cards are
    choices += [(s, f"{s} ({counts[s]})") for s in order if counts[s]]
    if skipped:
        choices.append((WHEN_FALSE, f"when false ({len(skipped)})"))
    buttons = "".join(
        f"<button type='button' data-filter='{name}' aria-pressed='{str(name == 'all').lower()}'>"
        f"{_e(label)}</button>"
        for name, label in choices
    )
    return f"<nav class='filter' aria-label='show only' hidden>{buttons}</nav>"


def failures_first(records: Sequence[Record]) -> list[Record]:
    """Failed, uncertain and blocked records first, each group in the order given."""
    rank = {status: n for n, status in enumerate(FIRST)}
    return sorted(records, key=lambda r: rank.get(report_status(r.status), len(rank)))


def skipped_section(skipped: Sequence[SkippedRow]) -> str:
    """The rows ``when`` filtered out, as their key and data line: not items, no cards."""
    lines = "".join(
        f"<li data-status='{WHEN_FALSE}' data-item='{_e(row.item_id)}'>{_e(skipped_line(row))}</li>"
        for row in skipped
    )
    return (
        f"<section class='group' data-section='{WHEN_FALSE}'><h2>filtered out by when "
        f"<span class='muted'>({len(skipped)})</span></h2>"
        f"<ul class='filtered-rows'>{lines}</ul></section>"
    )


def skipped_line(row: SkippedRow) -> str:
    """``c004 (customers.csv:5) — videos.welcome: when was false``."""
    entry = f"{row.section}.{row.name}"
    if row.key is None:
        return f"{entry} — when was false"
    where = f" ({row.source.file}:{row.source.line})" if row.source is not None else ""
    return f"{row.key}{where} — {entry}: when was false"


def _by_section(records: list[Record]) -> list[tuple[str, list[Record]]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.section, []).append(record)
    rank = {name: n for n, name in enumerate(SECTION_ORDER)}
    return sorted(groups.items(), key=lambda group: rank.get(group[0], len(rank)))


def card(record: Record, item: Item | None, media_prefix: str = "") -> str:
    """One item: heading, status badge, facts, script, error and player."""
    status = report_status(record.status)
    heading = record.key or (item.name if item else record.item)
    parts = [
        f"<header><h3>{_e(heading)}</h3><span class='badge'>{status}</span></header>",
        f"<div class='meta'>{_e(' · '.join(_facts(record, item)))}</div>",
    ]
    if item is not None and item.text:
        parts.append(f"<div class='script'>{_e(item.text)}</div>")
    if record.error_message or record.error_code is not None:
        parts.append(f"<div class='error'>{_e(error_text(record))}</div>")
    parts.append(player(record, media_prefix))
    return (
        f"<article class='card {status}' data-item='{_e(record.item)}' "
        f"data-status='{status}'>{''.join(parts)}</article>"
    )


def error_text(record: Record) -> str:
    """The error message, led by its code unless the message already names it."""
    message = record.error_message or ""
    code = record.error_code
    if code is None or re.search(rf"\b{code}\b", message):
        return message
    return f"[{code}] {message}".strip()


def _facts(record: Record, item: Item | None) -> list[str]:
    facts = [record.item]
    title = item.request.get("title") if item is not None else None
    if isinstance(title, str) and title:
        facts.append(f"title {title}")
    if record.resource_id:
        facts.append(record.resource_id)
    if record.duration_s:
        facts.append(format_seconds(record.duration_s))
    if record.attempts > 1:
        facts.append(f"{record.attempts} attempts")
    return facts


def player(record: Record, media_prefix: str = "") -> str:
    """A ``<video>`` or ``<audio>`` for a downloaded output; empty when there is none."""
    tag = PLAYERS.get(record.kind)
    if tag is None or not record.output:
        return ""
    src = media_src(record.output, media_prefix)
    link = f"<a href='{src}'>{_e(record.output)}</a>"
    return f"<{tag} controls preload='metadata' src='{src}'></{tag}><div class='meta'>{link}</div>"


def media_src(output: str, media_prefix: str = "") -> str:
    """A relative URL for an output path: percent-encoded, then escaped for an attribute."""
    path = posixpath.join(media_prefix, output) if media_prefix else output
    return _e(quote(path, safe="/"))


def format_seconds(seconds: float) -> str:
    """``7 s``, ``2 min 5 s``, ``1 h 3 min``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def review_path(csv_path: Path) -> Path:
    """The page's place: beside the CSV report, same name, ``.html``."""
    return csv_path.with_suffix(".html")


def write(
    records: Iterable[Record],
    items: Mapping[str, Item],
    path: Path,
    *,
    output_dir: Path,
    title: str,
    written: datetime | None = None,
    run_started: datetime | None = None,
    skipped: Sequence[SkippedRow] = (),
) -> None:
    """Write the page atomically; media links lead from ``path``'s folder to ``output_dir``.
    ``written`` defaults to now, in this machine's time zone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = os.path.relpath(output_dir.resolve(), path.parent.resolve())
    prefix = "" if prefix == "." else Path(prefix).as_posix()
    page = render(
        records,
        items,
        title=title,
        media_prefix=prefix,
        written=written or datetime.now().astimezone(),
        run_started=run_started,
        skipped=skipped,
    )
    write_atomically(path, page)
