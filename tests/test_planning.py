"""The plan: a pure function of the graph and the prior state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hifly_batch.core.graph import Graph, build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.core.planning import Action, PriorState, make_plan
from hifly_batch.manifest.loader import load_campaign
from tests.manifest_helpers import campaign

VIDEO = "videos.welcome[c2]"


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    return build_graph(load_campaign(campaign(tmp_path_factory.mktemp("plan"))))


def done_state(graph: Graph) -> dict[str, PriorState]:
    return {
        item.id: PriorState(
            status=Status.DONE,
            fingerprint=item.fingerprint,
            settings_fingerprint=item.settings_fingerprint,
            task_id="t1",
            settings=item.settings,
            field_digests=graph.field_digests(item.id),
        )
        for item in graph
    }


def test_no_state_creates_everything(graph: Graph) -> None:
    plan = make_plan(graph, {})
    assert {s.action for s in plan.steps} == {Action.CREATE}
    assert plan.totals() == {"create": 9}
    assert plan.counts()["videos"] == {"create": 3}


def test_all_done_skips_everything(graph: Graph) -> None:
    assert make_plan(graph, done_state(graph)).totals() == {"skip": 9}


@pytest.mark.parametrize(
    ("status", "task_id", "action"),
    [
        (Status.FAILED, None, Action.RETRY),
        (Status.RUNNING, "t9", Action.RESUME),
        (Status.RUNNING, None, Action.UNCERTAIN),
        (Status.SUBMITTING, None, Action.UNCERTAIN),
        (Status.UNCERTAIN, None, Action.UNCERTAIN),
        (Status.PENDING, None, Action.CREATE),
        (Status.BLOCKED, None, Action.CREATE),
        (Status.SKIPPED, None, Action.CREATE),
    ],
)
def test_action_per_status(
    graph: Graph, status: Status, task_id: str | None, action: Action
) -> None:
    prior = done_state(graph)
    prior[VIDEO] = PriorState(status, graph[VIDEO].fingerprint, task_id=task_id)
    steps = {s.item.id: s for s in make_plan(graph, prior).steps}
    assert steps[VIDEO].action is action


CLONE = "voices.cloned"
DOWNLOADED = "its output is downloaded, not re-created"
FETCHED = "is fetched again, not re-created"


@pytest.mark.parametrize(
    ("item", "task_id", "work_exists", "action", "reason"),
    [
        (VIDEO, "t7", True, Action.DOWNLOAD, f"task t7 finished; {DOWNLOADED}"),
        (VIDEO, "t7", False, Action.RETRY, "failed last run"),
        (VIDEO, None, True, Action.RETRY, "failed last run"),
        (CLONE, "t7", True, Action.RETRY, f"failed last run; its task t7 {FETCHED}"),
    ],
)  # fmt: skip
def test_a_failed_item_whose_task_exists_is_fetched_again_never_created(
    graph: Graph, item: str, task_id: str | None, work_exists: bool, action: Action, reason: str
) -> None:
    prior = done_state(graph)
    prior[item] = PriorState(
        Status.FAILED, graph[item].fingerprint, task_id=task_id, work_exists=work_exists,
        settings_fingerprint=graph[item].settings_fingerprint,
    )  # fmt: skip
    steps = {s.item.id: s for s in make_plan(graph, prior).steps}
    assert (steps[item].action, steps[item].reason) == (action, reason)


def test_uncertain_can_be_resubmitted(graph: Graph) -> None:
    prior = done_state(graph)
    prior[VIDEO] = PriorState(Status.UNCERTAIN, graph[VIDEO].fingerprint)
    steps = {s.item.id: s for s in make_plan(graph, prior, resubmit_uncertain=True).steps}
    assert steps[VIDEO].action is Action.CREATE


def test_uncertain_upstream_blocks_dependents(graph: Graph) -> None:
    prior = {"assets.sample": PriorState(Status.SUBMITTING, graph["assets.sample"].fingerprint)}
    steps = {s.item.id: s for s in make_plan(graph, prior).steps}
    assert steps["voices.cloned"].action is Action.BLOCKED
    assert steps["voices.cloned"].reason == "waits for assets.sample (uncertain)"
    assert steps[VIDEO].action is Action.BLOCKED
    assert steps["videos.welcome[c1]"].reason == "waits for voices.cloned (blocked)"
    assert steps["audios.promo"].action is Action.CREATE


def test_failed_upstream_is_retried_so_dependents_run(graph: Graph) -> None:
    prior = done_state(graph)
    prior["voices.cloned"] = PriorState(Status.FAILED, graph["voices.cloned"].fingerprint)
    steps = {s.item.id: s for s in make_plan(graph, prior).steps}
    assert steps["voices.cloned"].action is Action.RETRY
    assert steps[VIDEO].action is Action.SKIP


def test_voice_setting_change_edits_and_recreates_first(tmp_path: Path, graph: Graph) -> None:
    prior = done_state(graph)
    faster = build_graph(load_campaign(campaign(tmp_path, replace={"rate: 1.1": "rate: 1.25"})))
    plan = make_plan(faster, prior)
    listing = plan.listing()
    assert [s.action for s in listing[:4]] == [Action.EDIT] + [Action.RECREATE] * 3
    assert listing[0].reason == "voice settings changed: rate 1.1 → 1.25"
    assert listing[1].reason == "voice settings changed: rate 1.1 → 1.25 (voices.cloned)"
    assert plan.totals() == {"skip": 5, "recreate": 3, "edit": 1}


def test_text_change_reason(tmp_path: Path, graph: Graph) -> None:
    prior = done_state(graph)
    csv = "customer_id,name,city\nc1,张伟,上海\nc2,Alicia,London\nc3,李娜,成都\n"
    changed = build_graph(load_campaign(campaign(tmp_path, csv=csv)))
    steps = {s.item.id: s for s in make_plan(changed, prior).steps}
    assert steps[VIDEO].action is Action.RECREATE
    assert steps[VIDEO].reason == "title changed; text changed"


def test_plan_is_pure(graph: Graph) -> None:
    prior = done_state(graph)
    assert make_plan(graph, prior) == make_plan(graph, prior)


def test_recreate_makes_only_the_named_done_items_again(graph: Graph) -> None:
    plan = make_plan(graph, done_state(graph), recreate={VIDEO})
    steps = {s.item.id: s for s in plan.steps}
    assert (steps[VIDEO].action, steps[VIDEO].reason) == (Action.RECREATE, "asked with --recreate")
    assert plan.totals() == {"skip": 8, "recreate": 1}
    fresh = make_plan(graph, {}, recreate={VIDEO})
    assert {s.item.id: s.action for s in fresh.steps}[VIDEO] is Action.CREATE


@pytest.mark.parametrize(
    ("status", "action"), [(Status.UNCERTAIN, Action.UNCERTAIN), (Status.RUNNING, Action.RESUME)]
)
def test_recreate_never_sends_again_what_may_still_be_made(
    graph: Graph, status: Status, action: Action
) -> None:
    prior = done_state(graph)
    prior[VIDEO] = replace(prior[VIDEO], status=status)
    plan = make_plan(graph, prior, recreate={VIDEO})
    assert {s.item.id: s.action for s in plan.steps}[VIDEO] is action


def test_items_the_state_has_and_the_manifest_no_longer_has_are_removed(graph: Graph) -> None:
    prior = done_state(graph)
    prior["videos.welcome[gone]"] = PriorState(Status.DONE, "f", task_id="t0")
    plan = make_plan(graph, prior)
    assert plan.removed == ("videos.welcome[gone]",)
    assert plan.totals() == {"skip": 9, "removed": 1}
    assert plan.counts()["videos"] == {"skip": 3, "removed": 1}
    assert make_plan(graph, done_state(graph)).removed == ()


@pytest.mark.parametrize(
    ("item", "saved", "action", "reason"),
    [
        (VIDEO, "videos/welcome/c2.mp4", Action.SKIP, "done, unchanged"),
        (VIDEO, "old/c2.mp4", Action.MOVE, "output old/c2.mp4 → videos/welcome/c2.mp4"),
        ("audios.promo", "audios/promo.wav", Action.SKIP, "done, unchanged"),  # URL's extension
        ("audios.promo", "old/promo.wav", Action.MOVE, "output old/promo.wav → audios/promo.wav"),
    ],
)
def test_a_done_item_saved_elsewhere_is_moved_not_made_again(
    graph: Graph, item: str, saved: str, action: Action, reason: str
) -> None:
    prior = done_state(graph)
    prior[item] = replace(prior[item], output=saved)
    steps = {s.item.id: s for s in make_plan(graph, prior).steps}
    assert (steps[item].action, steps[item].reason) == (action, reason)


@pytest.mark.parametrize(
    ("whole", "action"), [(True, Action.SKIP), (False, Action.DOWNLOAD), (None, Action.SKIP)]
)
def test_a_done_item_whose_output_is_lost_is_downloaded_not_made_again(
    graph: Graph, whole: bool | None, action: Action
) -> None:
    prior = done_state(graph)
    prior[VIDEO] = replace(prior[VIDEO], output="videos/welcome/c2.mp4", output_size=10)
    seen: list[tuple[str, int | None]] = []

    def check(path: str, size: int | None, sha256: str | None) -> bool:
        seen.append((path, size))
        return bool(whole)

    plan = make_plan(graph, prior, output_whole=None if whole is None else check)
    assert {s.item.id: s.action for s in plan.steps}[VIDEO] is action
    assert seen == ([] if whole is None else [("videos/welcome/c2.mp4", 10)])
