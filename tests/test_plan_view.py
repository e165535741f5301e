"""The plan's text and JSON: the changes grouped per manifest entry, the totals line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hifly_batch.core.graph import Item, ItemKind
from hifly_batch.core.planning import Action, Plan, Step
from hifly_batch.reports.plan_view import (
    Target,
    group_label,
    grouped,
    render_json,
    render_text,
    split_id,
    totals_line,
)

MANIFEST = Path("campaign.yaml")
REAL = Target(False, "https://hfw-api.hifly.cc")


def step(item_id: str, action: Action, reason: str = "") -> Step:
    entry, _, rest = item_id.partition("[")
    section, name = entry.split(".")
    kind = ItemKind.VIDEO_BY_TTS if rest else ItemKind.AVATAR_BY_VIDEO
    item = Item(item_id, section, name, kind, {}, "fp", key=rest[:-1] or None)
    return Step(item, action, reason)


def rows(count: int, action: Action, reason: str = "", start: int = 1) -> list[Step]:
    return [step(f"videos.welcome[c{n:03d}]", action, reason) for n in range(start, start + count)]


def describe(s: Step) -> tuple[str, Action, str]:
    return s.item.id, s.action, s.reason


def unit_ids(units: list[tuple[Step, ...]]) -> list[list[str]]:
    return [[s.item.id for s in unit] for unit in units]


@pytest.mark.parametrize(
    ("item_id", "split"),
    [("videos.welcome[c001]", ("videos.welcome", "c001")), ("avatars.founder", None),
     ("videos.w[a[b]]", ("videos.w", "a[b]")), ("videos.w[open", None)],
)  # fmt: skip
def test_split_id(item_id: str, split: tuple[str, str] | None) -> None:
    assert split_id(item_id) == split


def test_five_rows_stay_apart_six_become_one_unit_at_the_first_place() -> None:
    five = [step("avatars.founder", Action.CREATE), *rows(5, Action.CREATE, "new")]
    assert [len(u) for u in grouped(five, describe)] == [1] * 6
    six = [*rows(3, Action.CREATE, "new"), step("avatars.founder", Action.CREATE)]
    six += rows(3, Action.CREATE, "new", start=4)
    units = grouped(six, describe)
    videos = [f"videos.welcome[c00{n}]" for n in range(1, 7)]
    assert unit_ids(units) == [videos, ["avatars.founder"]]
    assert group_label([s.item.id for s in units[0]]) == "videos.welcome[c001 … c006]"


def test_rows_group_by_action_and_reason_and_then_by_action() -> None:
    steps = rows(6, Action.RECREATE, "text changed") + rows(2, Action.RECREATE, "title changed", 7)
    steps += [step(f"videos.welcome[c1{n:02d}]", Action.DOWNLOAD, f"task {n}") for n in range(7)]
    steps += rows(6, Action.RETRY, "failed last run", 200)
    units = grouped(steps, describe)
    assert [len(u) for u in units] == [6, 1, 1, 7, 6]
    assert {s.action for s in units[3]} == {Action.DOWNLOAD}  # each from its own task


def test_default_text_lists_changes_and_attention_grouped_and_the_totals() -> None:
    steps = [
        step("avatars.founder", Action.SKIP),
        *rows(240, Action.SKIP),
        *rows(3, Action.CREATE, "new", 300),
        step("videos.welcome[c400]", Action.UNCERTAIN, "may have been submitted"),
        *rows(7, Action.RECREATE, "text changed", 500),
    ]
    removed = (*(f"videos.welcome[c9{n:02d}]" for n in range(7)), "avatars.old")
    text = render_text(MANIFEST, Plan(tuple(steps), removed), REAL).splitlines()
    assert text == [
        "plan for campaign.yaml against the HiFly API at https://hfw-api.hifly.cc",
        "  recreate  videos.welcome[c500 … c506]  video_by_tts    7 rows  (text changed)",
        "  create    videos.welcome[c300]         video_by_tts",
        "  create    videos.welcome[c301]         video_by_tts",
        "  create    videos.welcome[c302]         video_by_tts",
        "  uncertain videos.welcome[c400]         video_by_tts    (may have been submitted)",
        "  removed   videos.welcome[c900 … c906]  7 rows  (outputs kept)",
        "  removed   avatars.old  (outputs kept)",
        "",
        "Plan: 3 to create, 7 to recreate, 241 unchanged, 1 uncertain (not sent again), "
        "8 removed (outputs kept).",
    ]


def test_all_lists_every_item_and_the_counts_table() -> None:
    steps = [step("avatars.founder", Action.SKIP), *rows(8, Action.CREATE, "new")]
    plan = Plan(tuple(steps), ("videos.welcome[c999]",))
    text = render_text(MANIFEST, plan, Target(True), every=True).splitlines()
    assert text[0] == "plan for campaign.yaml against the sandbox (--sandbox)"
    assert [line.split()[:2] for line in text[1:10]] == [["skip", "avatars.founder"]] + [
        ["create", f"videos.welcome[c00{n}]"] for n in range(1, 9)
    ]
    assert text[10] == "  removed   videos.welcome[c999]  (outputs kept)"
    assert text[12].split() == ["section", "create", "skip", "removed"]
    assert text[-3].split() == ["total", "8", "1", "1"]
    assert text[-1] == "Plan: 8 to create, 1 unchanged, 1 removed (outputs kept)."


@pytest.mark.parametrize(
    ("steps", "removed", "said"),
    [
        (rows(244, Action.SKIP), (), "No changes. 244 items are done and unchanged."),
        (rows(1, Action.SKIP), (), "No changes. 1 item is done and unchanged."),
        ([], (), "No changes."),
        (rows(2, Action.SKIP) + rows(1, Action.BLOCKED, "waits", 5), ("videos.welcome[c9]",),
         "No changes. 2 items are done and unchanged; 1 blocked, 1 removed (outputs kept)."),
        (rows(1, Action.UNCERTAIN), (), "No changes. 1 uncertain (not sent again)."),
        (rows(2, Action.MOVE) + rows(1, Action.RESUME, "", 3) + rows(1, Action.EDIT, "", 4),
         (), "Plan: 1 to edit, 2 to move, 1 to resume."),
    ],
)  # fmt: skip
def test_totals_line(steps: list[Step], removed: tuple[str, ...], said: str) -> None:
    assert totals_line(Plan(tuple(steps), removed)) == said


def test_extra_lines_go_after_the_totals_and_extra_keys_into_the_json() -> None:
    plan = Plan(tuple(rows(244, Action.SKIP)), ("videos.welcome[c999]",))
    text = render_text(MANIFEST, plan, REAL, extra_lines=["Estimate: 0 credits"])
    assert text.splitlines()[-2:] == [totals_line(plan), "Estimate: 0 credits"]
    document = json.loads(render_json(MANIFEST, plan, REAL, extra={"estimate": {"total": 0}}))
    assert document["target"] == {"sandbox": False, "base_url": "https://hfw-api.hifly.cc"}
    assert document["changes"] is False and document["estimate"] == {"total": 0}
    assert len(document["items"]) == 244 and document["removed"] == ["videos.welcome[c999]"]
    assert document["totals"] == {"skip": 244, "removed": 1}
