"""Which items a run may touch: ``--only`` globs, ``--retry-failed``, and what they need."""

from __future__ import annotations

import pytest

from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import PriorState, make_plan
from hifly_batch.core.scope import NoMatch, expand_scope, id_pattern, select
from hifly_batch.errors import UsageError
from hifly_batch.manifest.loader import load_campaign
from tests.manifest_helpers import campaign

VIDEO_INPUTS = {"assets.clip", "avatars.founder", "assets.sample", "voices.cloned"}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    return build_graph(load_campaign(campaign(tmp_path_factory.mktemp("scope"))))


def all_done(graph: Graph) -> dict[str, PriorState]:
    return {
        i.id: PriorState(
            Status.DONE, i.fingerprint, i.settings_fingerprint, "t", i.settings,
            graph.field_digests(i.id),
        )
        for i in graph
    }  # fmt: skip


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        (
            "videos.welcome[c1]",
            ["videos.welcome[c1]"],
            ["videos.welcome[c11]", "videos.welcomeXc1]"],
        ),
        ("videos.*", ["videos.welcome[c1]", "videos.x"], ["audios.promo"]),
        ("videos.welcome[c?]", ["videos.welcome[c1]"], ["videos.welcome[c12]"]),
        ("*[c1]", ["videos.welcome[c1]"], ["videos.welcome[c2]"]),
    ],
)
def test_an_id_glob_treats_brackets_as_the_ids_own(
    glob: str, matches: list[str], misses: list[str]
) -> None:
    pattern = id_pattern(glob)
    assert all(pattern.fullmatch(m) for m in matches)
    assert not any(pattern.fullmatch(m) for m in misses)


def test_no_options_means_every_item(graph: Graph) -> None:
    assert select(graph, make_plan(graph, {}), {}) is None


def test_only_takes_what_the_items_need_when_it_is_not_done(graph: Graph) -> None:
    fresh = select(graph, make_plan(graph, {}), {}, only=["videos.welcome[c1]"])
    assert fresh == {"videos.welcome[c1]"} | VIDEO_INPUTS
    done = all_done(graph)
    statuses = {item: Status.DONE for item in done}
    again = select(graph, make_plan(graph, done), statuses, only=["videos.welcome[c1]"])
    assert again == {"videos.welcome[c1]"}  # its inputs are done: skipped, not in scope


def test_only_that_matches_nothing_is_a_usage_error(graph: Graph) -> None:
    with pytest.raises(NoMatch, match="no item id matches") as caught:
        select(graph, make_plan(graph, {}), {}, only=["videos.nope*"])
    assert isinstance(caught.value, UsageError)


def test_retry_failed_takes_failed_and_blocked_items_only(graph: Graph) -> None:
    done = all_done(graph)
    statuses = {item: Status.DONE for item in done}
    statuses["videos.welcome[c2]"] = Status.FAILED
    statuses["audios.promo"] = Status.BLOCKED
    statuses["videos.welcome[c3]"] = Status.UNCERTAIN
    scope = select(graph, make_plan(graph, done), statuses, retry_failed=True)
    assert scope == {"videos.welcome[c2]", "audios.promo"}


def test_expand_scope_follows_every_input(graph: Graph) -> None:
    assert expand_scope(graph, ["videos.welcome[c1]"]) == {"videos.welcome[c1]"} | VIDEO_INPUTS
    assert expand_scope(graph, []) == set()
