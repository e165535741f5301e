"""Copy one campaign's state between stores: a state file and a PostgreSQL database, in
either direction (SPEC §5, ``hifly-batch state copy FROM TO``).

A state file holds one campaign, on one kind of API, and says which; a database holds
many, so copying out of one names the campaign (or finds it the only one there). Both
states are held by their run locks while the records are copied, so no run changes
either meanwhile, and the target's records are replaced in one transaction: the copy is
all of the source's records or nothing. A target that already has records of the
campaign is left alone unless ``force``: they may be the newer ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hifly_batch.errors import UsageError
from hifly_batch.runner.state import Record, StateStore, open_state
from hifly_batch.runner.state_postgres import (
    DatabaseLocked,
    campaigns_in,
    holder_name,
    is_database,
    shown,
)


@dataclass(frozen=True)
class Copied:
    """What a copy did: ``records`` of ``campaign`` on ``api``, from ``source`` to
    ``target`` (as messages show them), and how many records the target had before."""

    campaign: str
    api: str
    records: int
    replaced: int
    source: str
    target: str


def copy_state(
    source: str, target: str, *, campaign: str | None = None, sandbox: bool = False,
    force: bool = False,
) -> Copied:  # fmt: skip
    """Copy ``campaign``'s records on the sandbox (``sandbox``) or the real service from
    the state at ``source`` to the one at ``target`` (each a file path or a
    ``postgresql://`` URL). Raises :class:`UsageError` for a copy that cannot be meant (a
    state onto itself, a campaign that is not in the source, a target that already has
    records without ``force``) and :class:`StateError` when a state cannot be read or
    written or a run holds it."""
    if _same(source, target):
        raise UsageError(f"{_shown(source)}: FROM and TO are the same state; nothing to copy")
    name, api = _identity(source, campaign, sandbox)
    with (
        open_state(source, readonly=True, campaign=name, api=api) as origin,
        origin.run_lock(),
    ):
        records = _records_of(origin, name, api)
        with open_state(target, campaign=name, api=api) as destination, _held(destination):
            destination.claim(api, name)
            found = destination.records()
            if found and not force:
                raise UsageError(
                    f"{destination.where}: already has {len(found)} record(s) of campaign "
                    f"{name!r}; they may be newer than the copy's. Add --force to replace "
                    "them with the copy"
                )
            destination.replace_all(records.values())
            return Copied(name, api, len(records), len(found), origin.where, destination.where)


def _identity(source: str, campaign: str | None, sandbox: bool) -> tuple[str, str]:
    """The campaign and API to copy: a file says which it holds; a database holds many,
    and ``campaign`` names one (needed only when it holds more than one)."""
    if not is_database(source):
        with open_state(source, readonly=True) as store:
            claimed = store.claimed()
        named = claimed.get("campaign") or campaign
        if named is None:
            raise UsageError(
                f"{source}: this state file does not say which campaign it holds (it was "
                "written by an early version); name it with --campaign"
            )
        if campaign is not None and campaign != named:
            raise UsageError(f"{source}: holds campaign {named!r}, not {campaign!r}")
        if sandbox and claimed.get("api", "sandbox") != "sandbox":
            raise UsageError(f"{source}: holds work made on the real service, not a rehearsal")
        return named, claimed.get("api", "sandbox" if sandbox else "service")
    present = [(n, kind) for n, kind in campaigns_in(source) if campaign in (None, n)]
    wanted = "sandbox" if sandbox else "service"
    # Without --sandbox, the real work is meant; a campaign only rehearsed there is its rehearsal.
    chosen = [p for p in present if p[1] == wanted] or ([] if sandbox else present)
    if campaign is not None and not chosen:
        raise UsageError(f"{shown(source)}: no records of campaign {campaign!r} on the {wanted}")
    if len(chosen) != 1:
        which = ", ".join(f"{n!r} ({kind})" for n, kind in present) or "none"
        raise UsageError(
            f"{shown(source)}: name the campaign to copy with --campaign, and add --sandbox "
            f"for a rehearsal's records (campaigns there: {which})"
        )
    return chosen[0]


def _records_of(store: StateStore, campaign: str, api: str) -> dict[str, Record]:
    records = store.records()
    if not records:
        raise UsageError(f"{store.where}: no records of campaign {campaign!r} on the {api}")
    return records


@contextlib.contextmanager
def _held(store: StateStore) -> Iterator[None]:
    """The target's run lock; one this very copy holds (the source, spelled another way:
    another port notation, ``localhost``, a socket) is the same state."""
    try:
        with store.run_lock():
            yield
    except DatabaseLocked as held:
        if not held.holder.startswith(holder_name()):
            raise
        same = f"{store.where}: FROM and TO are the same state; nothing to copy"
        raise UsageError(same) from None


def _same(source: str, target: str) -> bool:
    """Whether two spellings name one state: one database (whatever the scheme's spelling
    or the password), or one file (whatever the path's)."""
    if is_database(source) or is_database(target):
        both = is_database(source) and is_database(target)
        return both and shown(source) == shown(target) != "postgresql://…"
    try:
        return Path(source).samefile(target)
    except OSError:  # (one of them is not there yet)
        return False


def _shown(where: str) -> str:
    return shown(where) if is_database(where) else where
