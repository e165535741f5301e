"""The lock file, ``<manifest stem>.lock``: the campaign's record of what was made,
committed beside the manifest (SPEC §5; in the spirit of DVC's ``dvc.lock``)::

    {"hifly-batch": "lock", "format": 1, "campaign": "spring"}
    {"id": "assets.a", "kind": "upload", "fingerprint": "…", "status": "done", "resource_id": "1"}
    {"id": "videos.welcome[c001]", "kind": "video_by_tts", "fingerprint": "…", "status": "done",
     "task_id": "t9", "output": "welcome/c001.mp4", "size": 48213, "sha256": "…", "duration": 4.2}

(the last one is one line in the file).

Text, one JSON object per line: a header naming the format and the campaign,
then one line per item that has a task or a resource (or may have one: an
uncertain create), sorted by item id. Nothing of the machine goes in (no
timestamps, no absolute paths, never the token), so a run that changed nothing
writes the same bytes, and two branches that each added items merge line by line
(``init`` writes ``*.lock merge=union`` to ``.gitattributes``).

This file is the state's other half, not a second state: the local state (this
machine's record) and the lock file (everyone's) are read together, item by
item, by :func:`combine`. A union merge may leave several lines for one item,
and a clone's state may disagree with the file; :func:`choose` picks one record
by one rule wherever the records come from, so every machine reads the same
file the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from hifly_batch import files
from hifly_batch.core.lifecycle import Status
from hifly_batch.runner.errors import StateError
from hifly_batch.runner.state import Record

FORMAT = 1
_HEADER_KEY = "hifly-batch"

# Statuses a line can hold. ``submitting`` is written as ``uncertain``: to anyone
# reading the file later, a create whose answer was not recorded is uncertain.
_WRITTEN = (Status.DONE, Status.RUNNING, Status.UNCERTAIN, Status.FAILED)


class LockFileError(StateError):
    """The lock file cannot be read as one of this campaign (exit 3): nothing is guessed,
    since a record skipped here would be created, and paid for, again."""


def lock_path(manifest: Path, *, sandbox: bool) -> Path:
    """``campaign.yaml`` -> ``campaign.lock`` beside it; ``campaign.sandbox.lock`` for
    sandbox runs, whose avatars, voices and tasks exist only in that sandbox."""
    return manifest.with_name(manifest.stem + (".sandbox.lock" if sandbox else ".lock"))


# Records and lines --------------------------------------------------------------


def entry(record: Record) -> dict[str, Any] | None:
    """The line's object for ``record``, or None when it records nothing made, or maybe
    made (never submitted, refused, failed without work, blocked): then a line for
    earlier work of the item, if the file has one, stays."""
    status = Status.UNCERTAIN if record.status is Status.SUBMITTING else record.status
    if status not in _WRITTEN or (status is Status.FAILED and not record.has_work):
        return None
    if status is not Status.UNCERTAIN and not (record.task_id or record.resource_id):
        return None
    fields: dict[str, Any] = {
        "id": record.item,
        "kind": record.kind,
        "fingerprint": record.fingerprint,
        "settings_fingerprint": record.settings_fingerprint or None,
        "settings": dict(sorted(record.settings.items())) if record.settings else None,
        "status": status.value,
        "work": True if record.work_exists and status is Status.FAILED else None,
        "task_id": record.task_id,
        "resource_id": record.resource_id,
        "output": record.output,
        "size": record.output_size,
        "sha256": record.output_sha256,
        "duration": record.duration_s,
        "replaces": list(record.replaces) if record.task_id and record.replaces else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def render(campaign: str, records: Iterable[Record]) -> str:
    """The file's text: the header, then one line per recorded item, by item id."""
    header = {_HEADER_KEY: "lock", "format": FORMAT, "campaign": campaign}
    lines = [_line(header)]
    entries = (entry(r) for r in records)
    lines += sorted(_line(e) for e in entries if e is not None)
    return "\n".join(lines) + "\n"


def parse(text: str, *, path: Path, campaign: str) -> list[Record]:
    """Every item line of a lock file, as records (several for one item after a union
    merge); raises :class:`LockFileError` naming the line for anything else."""
    records = []
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if line.startswith(("<<<<<<<", "=======", ">>>>>>>", "|||||||")):
            raise LockFileError(
                f"{where}: a git merge conflict is left in the lock file; keep the lines of "
                "both sides and remove the markers (with `*.lock merge=union` in "
                ".gitattributes, as `hifly-batch init` writes it, git does this itself)"
            )
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if _HEADER_KEY in data:
                _check_header(data, where, campaign)
                header_seen = True
            elif not header_seen:
                raise ValueError("the header line naming the campaign is missing above it")
            else:
                records.append(_record(data))
        except (ValueError, TypeError, KeyError) as exc:
            raise LockFileError(
                f"{where}: not a line of a hifly-batch lock file ({exc}); restore the file "
                "from git (`git checkout -- FILE`), or fix that line"
            ) from None
    if not header_seen:
        raise LockFileError(
            f"{path}: the lock file is empty, so the record of what was made is gone; "
            "restore it from git (`git checkout -- FILE`); to start the record over "
            "(a run then creates again, and pays again for, what this machine's state "
            "does not know), delete the file"
        )
    return records


def _check_header(data: Mapping[str, Any], where: str, campaign: str) -> None:
    if data.get("format") != FORMAT:
        raise LockFileError(
            f"{where}: lock file format {data.get('format')!r}, this hifly-batch reads "
            f"{FORMAT}; use the hifly-batch version that wrote it"
        )
    if data.get("campaign") != campaign:
        raise LockFileError(
            f"{where}: this lock file records campaign {data.get('campaign')!r}, not "
            f"{campaign!r}; nothing was changed. If the campaign was renamed, change the "
            "name in the file's first line too"
        )


def _record(data: Mapping[str, Any]) -> Record:
    item = _text(data, "id")
    status = Status(_text(data, "status"))
    if status not in _WRITTEN:
        raise ValueError(f"status {status.value!r} is not one a lock file holds")
    settings = data.get("settings")
    if settings is not None and not (
        isinstance(settings, dict) and all(isinstance(v, str) for v in settings.values())
    ):
        raise ValueError("settings is not a mapping of strings")
    return Record(
        item=item,
        section=item.split(".", 1)[0],
        kind=_text(data, "kind"),
        key=item[item.index("[") + 1 : -1] if item.endswith("]") and "[" in item else None,
        status=status,
        fingerprint=_text(data, "fingerprint"),
        settings_fingerprint=_text(data, "settings_fingerprint", ""),
        task_id=_text(data, "task_id", None),
        resource_id=_text(data, "resource_id", None),
        output=_text(data, "output", None),
        output_size=_number(data, "size", int),
        output_sha256=_text(data, "sha256", None),
        duration_s=_number(data, "duration", float),
        settings=settings,
        work_exists=data.get("work") is True,
        replaces=_task_ids(data.get("replaces")),
    )


_REQUIRED = object()


def _text(data: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    value = data.get(key, default)
    if value is _REQUIRED:
        raise KeyError(f"no {key!r}")
    if value is not default and not isinstance(value, str):
        raise ValueError(f"{key} {value!r} is not text")
    return value


def _task_ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"replaces {value!r} is not a list of task ids")
    return tuple(value)


def _number(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, kind))):
        raise ValueError(f"{key} {value!r} is not a number")
    return value


def _line(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


# Choosing between records -----------------------------------------------------------


def choose(
    local: Record | None,
    locked: Sequence[Record],
    fingerprint: str | None,
    *,
    prefer_local: bool = True,
) -> Record:
    """The one record to go by for an item, of its local record and its lock-file lines.

    SPEC §5's rule: finished work wins, then the record matching the manifest's
    ``fingerprint``, read so that nothing is made twice and nothing outdated is
    called done: finished work for the current fingerprint first; then a task for
    it that may still be running (or an uncertain create), which finished work of
    an older fingerprint would have made again beside it; then any record for the
    current fingerprint (a failed retry is newer than the output it replaces);
    then finished work of another. A record superseded by a later word on the same
    task (running, then done or failed) is left out.

    Ties go to the local record (``prefer_local``, as a run reads: it has the
    outputs it made) or else to the lock file's, then to the line that sorts
    first, so the answer does not depend on the order of the lines.
    """
    ordered = sorted(locked, key=_sort_key) if len(locked) > 1 else list(locked)
    candidates = ([local] if local is not None else []) + ordered
    alive = [c for c in candidates if not any(_supersedes(o, c) for o in candidates)]
    return max(
        alive,
        key=lambda c: _rank(c, fingerprint, (c is local) == prefer_local),
        default=candidates[0],
    )


def _sort_key(record: Record) -> tuple[str, ...]:
    """An order of lines that depends on what they say, not where they stand."""
    return (
        record.task_id or "",
        record.fingerprint,
        record.status.value,
        record.resource_id or "",
        record.output or "",
        record.output_sha256 or "",
    )


def _rank(record: Record, fingerprint: str | None, preferred: bool) -> tuple[bool, ...]:
    current = fingerprint is None or record.fingerprint == fingerprint
    finished = record.has_work
    underway = record.status in (Status.RUNNING, Status.UNCERTAIN, Status.SUBMITTING)
    return (finished and current, (finished or underway) and current, current, finished, preferred)


def _stage(record: Record) -> int:
    """How far a task had got: a failure after it finished (a download) is as far as done;
    -1 for a record that says nothing of its task (pending or blocked again)."""
    if record.has_work:
        return 3
    stages = {Status.SUBMITTING: 0, Status.UNCERTAIN: 0, Status.RUNNING: 1, Status.FAILED: 2}
    return stages.get(record.status, -1)


def _supersedes(later: Record, earlier: Record) -> bool:
    """``later`` is a further word on the task ``earlier`` speaks of, or the work made to
    replace it (``run --recreate``)."""
    if later is earlier or later.task_id is None or earlier.task_id is None:
        return False
    if _stage(later) < 0 or _stage(earlier) < 0:
        return False
    if earlier.task_id in later.replaces:  # made again for the same inputs
        return later.fingerprint == earlier.fingerprint
    return later.task_id == earlier.task_id and _stage(later) > _stage(earlier)


def combine(
    local: Mapping[str, Record], locked: Sequence[Record], fingerprints: Mapping[str, str]
) -> tuple[dict[str, Record], frozenset[str]]:
    """The records to go by: each item's choice of its local record and its lock-file
    lines; and the ids whose choice came from the lock file. ``fingerprints``: the
    manifest's, by item id (items the manifest no longer has are chosen without one)."""
    lines: dict[str, list[Record]] = {}
    for record in locked:
        lines.setdefault(record.item, []).append(record)
    chosen = dict(local)
    from_lock = set()
    for item, candidates in lines.items():
        pick = choose(local.get(item), candidates, fingerprints.get(item))
        if pick is not local.get(item):
            chosen[item] = pick
            from_lock.add(item)
    return chosen, frozenset(from_lock)


def to_write(
    local: Mapping[str, Record],
    changed: Set[str],
    locked: Sequence[Record],
    fingerprints: Mapping[str, str],
) -> list[Record]:
    """The records a run writes to the lock file, one per item: for an item the run
    ``changed``, or one the file lacks, the local record; for any other, the file's
    line, unless the local record is better by :func:`choose`'s rule.

    A local record of nothing made (blocked, refused, failed without work) leaves
    the file's line when that line records work: it still exists, and counts again
    if the manifest goes back to what it was made for. A line of work under way for
    the current inputs (a create in flight, written as uncertain, or a task running)
    goes once the run has settled that item: its outcome is the local record. A tie
    keeps the line already there, so that two machines holding different finished
    work for one item (both made it) do not each write their own on every run: a
    rerun that changes nothing writes the same bytes wherever it runs. Several lines
    for one item (a union merge) become the one chosen.
    """
    lines: dict[str, list[Record]] = {}
    for record in locked:
        lines.setdefault(record.item, []).append(record)
    written = {}
    for item in {*local, *lines}:  # (render puts the lines in order)
        mine, theirs = local.get(item), lines.get(item, [])
        says = mine if mine is not None and entry(mine) is not None else None
        if says is not None and (item in changed or not theirs) and not _lost_here(says, theirs):
            written[item] = says
            continue
        if item in changed:  # settled here: what the file had under way is over
            theirs = [t for t in theirs if _made(t) or t.fingerprint != fingerprints.get(item)]
        if theirs:  # a record of nothing made (blocked, refused) never erases work
            written[item] = choose(says, theirs, fingerprints.get(item), prefer_local=False)
    return list(written.values())


def _made(line: Record) -> bool:
    """The line records work that exists: a finished task, or a failed item's work."""
    return line.status is Status.DONE or (line.status is Status.FAILED and line.work_exists)


def _lost_here(mine: Record, theirs: Sequence[Record]) -> bool:
    """This machine failed to keep the output of a task the file records as done: a fact
    of this machine, not of the campaign, so the file keeps its line."""
    return mine.status is Status.FAILED and any(
        t.status is Status.DONE and t.task_id == mine.task_id for t in theirs
    )


# The file -----------------------------------------------------------------------


def read(path: Path, *, campaign: str) -> list[Record]:
    """The records of the lock file at ``path`` ([] when there is none yet).

    When there is none, another lock file beside it that records this campaign
    (the manifest was renamed, its lock file was not) is a :class:`LockFileError`:
    going on without it would pay again for everything it records."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor may have added a BOM
    except FileNotFoundError:
        if path.is_symlink():  # a link to a record that is not there is not "no record"
            raise LockFileError(
                f"{path}: the lock file is a link to {os.readlink(path)}, which does not "
                "exist; restore that file, or replace the link with the file"
            ) from None
        _refuse_orphans(path, campaign)
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise LockFileError(f"{path}: the lock file cannot be read ({exc})") from None
    return parse(text, path=path, campaign=campaign)


def _refuse_orphans(path: Path, campaign: str) -> None:
    sandbox = path.name.endswith(".sandbox.lock")
    for other in sorted(path.parent.glob("*.lock")):
        if other.name.endswith(".sandbox.lock") != sandbox or not other.is_file():
            continue
        if _campaign_of(other) == campaign:
            raise LockFileError(
                f"{path}: there is no lock file here, but {other.name} records campaign "
                f"{campaign!r}. If the manifest was renamed, rename its lock file too "
                f"(git mv {other.name} {path.name}) so that what it records is not paid "
                "for again; if it belongs to another manifest, give one of them another name"
            )


def _campaign_of(path: Path) -> str | None:
    """The campaign a lock file's header names; None for any other file."""
    try:
        with path.open(encoding="utf-8") as handle:
            header = json.loads(handle.readline(4096))
    except (OSError, ValueError):
        return None
    if isinstance(header, dict) and header.get(_HEADER_KEY) == "lock":
        return header.get("campaign")
    return None


def write(path: Path, text: str) -> bool:
    """Put ``text`` at ``path`` atomically (a reader sees the old file or the new one,
    never part of one), unless it holds exactly that already; True when written.

    Temporary files a killed write left beside it are removed first (the caller
    holds the campaign's lock: no other write is under way)."""
    for leftover in files.leftovers(path):
        leftover.unlink(missing_ok=True)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    try:
        files.write_atomically(path, text)
    except files.FileWriteError as exc:
        raise LockFileError(
            f"{exc}; the state has every record, so the next run that can write it will"
        ) from None
    return True
