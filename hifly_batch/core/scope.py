"""Which items a run may touch: ``--only`` globs and ``--retry-failed``, with what they need."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from hifly_batch.core.graph import Graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, Plan
from hifly_batch.errors import UsageError


class NoMatch(UsageError):
    """``--only`` patterns that match no item id."""


def select(
    graph: Graph,
    plan: Plan,
    statuses: Mapping[str, Status],
    *,
    only: Sequence[str] = (),
    retry_failed: bool = False,
) -> set[str] | None:
    """The item ids a run may touch (None: all), with every input they need that is not done.

    ``statuses`` is each recorded item's status. Raises :class:`NoMatch` when
    ``only`` is given and no item id matches it.
    """
    if not only and not retry_failed:
        return None
    chosen = [item.id for item in graph]
    if only:
        chosen = [i for i in chosen if i in matching(graph, only, "--only")]
    if retry_failed:
        stuck = (Status.FAILED, Status.BLOCKED)
        chosen = [i for i in chosen if statuses.get(i) in stuck]
    steps = {s.item.id: s.action for s in plan.steps}
    needed = expand_scope(graph, chosen)
    return {i for i in needed if i in chosen or steps[i] is not Action.SKIP} | set(chosen)


def matching(graph: Graph, globs: Sequence[str], option: str) -> set[str]:
    """The ids of the graph's items that match any of ``globs``; :class:`NoMatch` (naming
    ``option``) when none does."""
    patterns = [id_pattern(g) for g in globs]
    found = {item.id for item in graph if any(p.fullmatch(item.id) for p in patterns)}
    if not found:
        raise NoMatch(f"{option} {' '.join(globs)}: no item id matches")
    return found


def id_pattern(glob: str) -> re.Pattern[str]:
    """An item-id glob: ``*`` and ``?`` are wildcards, brackets are the id's own."""
    return re.compile(
        ".*".join(".".join(map(re.escape, part.split("?"))) for part in glob.split("*"))
    )


def expand_scope(graph: Graph, selected: Iterable[str]) -> set[str]:
    """The selected items and everything they need."""
    scope: set[str] = set()
    stack = list(selected)
    while stack:
        item_id = stack.pop()
        if item_id not in scope:
            scope.add(item_id)
            stack.extend(graph[item_id].deps)
    return scope
