"""The campaign record travels in git (SPEC §5, v1.1), end to end through the CLI.

A sandbox with ``identify=False`` stands in for the real service, so runs against it
write ``campaign.lock``, the record meant to be committed. Its world outlives any
campaign folder, so a test runs a campaign, then runs what a ``git clone`` of it
holds (the folder without ``.hifly/`` and ``out/``) against the same world, and counts
what the second run made: creates per endpoint, uploads, voice edits.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hifly_batch.commands.init import GITATTRIBUTES, GITIGNORE
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Faults, Sandbox
from hifly_batch.sandbox.media_maker import make_mp4
from tests.campaigns import Campaign, Result, cli, creates, database_records, popen
from tests.conftest import FAST, SECRET_TOKEN, Store

# The real service, as far as the client can tell: no X-HiFly-Sandbox header.
SERVICE = dataclasses.replace(FAST, identify=False, token=SECRET_TOKEN)
VIDEO_CREATE = "video/create_by_tts"
HEADER = '{"hifly-batch": "lock", "format": 1, "campaign": "campaign"}'


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "world", SERVICE) as running:
        yield running


# Helpers ---------------------------------------------------------------------------


def run(manifest: Path, sandbox: Sandbox) -> Result:
    return cli("run", "--no-progress", str(manifest), sandbox=sandbox)


def made(sandbox: Sandbox) -> dict[str, int]:
    """What the world has been asked to make or take so far: creates per endpoint, and
    the requests that cost something or change something (uploads, voice edits)."""
    counters = sandbox.counters()
    requests = counters.requests
    return {
        **{f"create {k}": v for k, v in counters.creates.items()},
        "upload url": requests.get("tool/create_upload_url", 0),
        "upload": requests.get("upload", 0),
        "voice/edit": requests.get("voice/edit", 0),
    }


def new(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """The counters that grew, by how much."""
    grown = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in grown.items() if v}


def clone_copy(source: Path, target: Path) -> Path:
    """What a git clone of ``source`` holds: everything but the state and the outputs."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".hifly", "out", ".git"))
    return target


def outputs(root: Path, *, rehearsal: bool = False) -> dict[str, bytes]:
    """Every video under ``root``'s output folder (a rehearsal's: ``out/campaign.sandbox``),
    by path relative to it."""
    folder = root / "out" / ("campaign.sandbox" if rehearsal else "campaign")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.mp4")}


def lock_lines(root: Path) -> list[dict[str, Any]]:
    """The item lines of ``root``'s campaign.lock, in file order (header checked)."""
    lines = (root / "campaign.lock").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == json.loads(HEADER), lines[0]
    return [json.loads(line) for line in lines[1:]]


def status_of(root: Path) -> dict[str, dict[str, Any]]:
    result = cli("status", "--json", str(root / "campaign.yaml"))
    assert result.code == 0, result.stderr
    return {r["item"]: r for r in json.loads(result.stdout)}


def plan_actions(root: Path) -> dict[str, str]:
    """The printed plan's action for each item, read from its text form."""
    result = cli("plan", "--all", str(root / "campaign.yaml"))
    assert result.code == 0, result.stderr
    found = re.findall(r"^\s+(\w+)\s+((?:assets|avatars|voices|videos)\.\S+)", result.stdout, re.M)
    return {item: action for action, item in found}


def add_row(root: Path, key: str, *, first: bool) -> None:
    """A new customer in customers.csv, right after the header or at the end."""
    table = root / "customers.csv"
    lines = table.read_bytes().split(b"\r\n")
    row = f"{key},新客户{key},北京".encode()
    if first:
        lines.insert(1, row)
    else:
        lines.insert(len(lines) - 1, row)  # before the empty piece after the last \r\n
    table.write_bytes(b"\r\n".join(lines))


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git in ``cwd``, away from the developer's global and system configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "HIFLY_"))}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def git_ok(cwd: Path, *args: str) -> str:
    proc = git(cwd, *args)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def identify(repo: Path) -> None:
    git_ok(repo, "config", "user.name", "Campaign Tester")
    git_ok(repo, "config", "user.email", "campaigns@example.invalid")


def git_clone(source: Path, target: Path) -> Path:
    git_ok(source.parent, "clone", "--quiet", str(source), str(target))
    identify(target)
    return target


def commit_all(repo: Path, message: str) -> None:
    git_ok(repo, "add", "-A")
    git_ok(repo, "commit", "--quiet", "-m", message)


def campaign_repo(root: Path, service: Sandbox, rows: int) -> Path:
    """A git repository holding a campaign that ran once, with init's .gitignore and
    .gitattributes, committed (state and outputs ignored, the lock file tracked)."""
    Campaign(root, rows=rows, rate="1.2").write()
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    (root / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")
    git_ok(root, "init", "--quiet", "-b", "main")
    identify(root)
    assert run(root / "campaign.yaml", service).code == 0
    commit_all(root, "campaign, first run")
    tracked = git_ok(root, "ls-files").split()
    assert "campaign.lock" in tracked
    assert not [p for p in tracked if p.startswith((".hifly/", "out/"))], tracked
    return root


def merge(into: Path, other: Path) -> subprocess.CompletedProcess[str]:
    """``git pull`` of ``other``'s main into ``into`` (a merge commit, no editor)."""
    return git(into, "pull", "--no-rebase", "--no-edit", "--quiet", str(other), "main")


def assert_merged_cleanly(repo: Path, proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"git merge failed:\n{proc.stdout}{proc.stderr}"
    assert git_ok(repo, "ls-files", "--unmerged") == ""
    for name in ("campaign.lock", "customers.csv"):
        text = (repo / name).read_text(encoding="utf-8")
        markers = [
            ln for ln in text.splitlines() if ln.startswith(("<<<<<<<", "=======", ">>>>>>>"))
        ]
        assert not markers, f"{name} holds conflict markers: {markers}"


def video(key: str) -> str:
    return f"videos.welcome[{key}]"


def assert_state_kept(root: Path, store: Store, items: int) -> None:
    """The runs of the campaign in ``root`` keep their state where ``store`` says: the
    state file beside the manifest, or the database (and then no state file at all)."""
    state_file = root / ".hifly" / "campaign.state.db"
    if store.in_database:
        assert store.url is not None and not state_file.exists()
        records = database_records(store.url)
    else:
        with FileState(state_file, readonly=True) as state:
            records = state.records()
    assert len(records) == items, sorted(records)


# 1. A fresh clone ---------------------------------------------------------------------


def test_a_fresh_clone_downloads_what_the_lock_file_records_and_makes_nothing(
    service: Sandbox, tmp_path: Path, store: Store
) -> None:
    """With the state in a database, the clone is another machine's with a database of its
    own: only the lock file travels."""
    origin = Campaign(tmp_path / "origin", rows=10, rate="1.2").write()
    first = run(origin.manifest, service)
    assert first.code == 0, first.stderr
    assert (origin.root / "campaign.lock").is_file()
    assert not (origin.root / "campaign.sandbox.lock").exists()
    originals = outputs(origin.root)
    assert len(originals) == 10
    before = made(service)
    assert before["voice/edit"] == 1  # the rate was set once, on the first run
    assert_state_kept(origin.root, store, items=14)

    clone = clone_copy(origin.root, tmp_path / "clone")
    if store.in_database:
        store.new_database()
    keys = [f"c{n:04d}" for n in range(1, 11)]
    actions = plan_actions(clone)
    assert {video(k): actions.get(video(k)) for k in keys} == {video(k): "download" for k in keys}
    assert set(actions.values()) == {"skip", "download"}, actions  # nothing to create or edit
    assert made(service) == before  # plan needs no network

    result = run(clone / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {}  # no create, no upload, no voice edit
    assert outputs(clone) == originals  # every video, byte for byte
    lock = "campaign.lock"
    assert (clone / lock).read_bytes() == (origin.root / lock).read_bytes()  # the same record
    # The videos it downloaded; the rest it skipped, read from the lock file.
    assert_state_kept(clone, store, items=10)

    add_row(clone, "c0011", first=False)
    add_row(clone, "c0012", first=False)
    result = run(clone / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 2}
    assert len(outputs(clone)) == 12
    assert_state_kept(clone, store, items=12)


# 2. A rerun that does nothing --------------------------------------------------------


def test_a_rerun_with_nothing_to_do_leaves_the_lock_file_byte_identical_and_clean(
    service: Sandbox, tmp_path: Path, store: Store
) -> None:
    campaign = Campaign(tmp_path / "c", rows=3, rate="1.2").write()
    assert run(campaign.manifest, service).code == 0
    lock = campaign.root / "campaign.lock"
    written = lock.read_bytes()
    before = made(service)

    result = run(campaign.manifest, service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {}
    assert lock.read_bytes() == written
    assert_state_kept(campaign.root, store, items=7)

    text = written.decode("utf-8")
    for secret in {SECRET_TOKEN, service.token}:
        assert secret not in text
    machines = [str(tmp_path), service.base_url, "127.0.0.1", str(Path.home())]
    if store.url is not None:  # nor where the database is
        machines += [store.url, store.url.split("?")[0], store.url.split("host=")[1]]
    for machine in machines:
        assert machine not in text, machine
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    assert lines[0] == HEADER
    items = [json.loads(line) for line in lines[1:]]
    assert all(isinstance(item, dict) for item in items)
    ids = [item["id"] for item in items]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(ids) == {
        "assets.founder_clip",
        "assets.voice_sample",
        "avatars.founder",
        "voices.founder_voice",
        *(video(f"c{n:04d}") for n in range(1, 4)),
    }
    absolute = [(item["id"], v) for item in items for v in _strings(item) if v.startswith("/")]
    assert absolute == []


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys and values, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


# 3. Two branches that each added rows ------------------------------------------------


def test_two_branches_that_added_different_rows_merge_in_git_and_make_nothing_again(
    service: Sandbox, tmp_path: Path
) -> None:
    origin = campaign_repo(tmp_path / "origin", service, rows=6)
    alice = git_clone(origin, tmp_path / "alice")
    bob = git_clone(origin, tmp_path / "bob")

    # Far apart in the CSV, side by side in the lock file (both sort after c0006), so
    # only the union merge of *.lock keeps git from a conflict there.
    add_row(alice, "d0001", first=True)  # right after the header
    before = made(service)
    result = run(alice / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 1}
    commit_all(alice, "a new customer first")

    add_row(bob, "d0002", first=False)  # at the end, six unchanged rows away
    before = made(service)
    result = run(bob / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 1}
    commit_all(bob, "a new customer last")

    assert_merged_cleanly(alice, merge(alice, bob))
    ids = [line["id"] for line in lock_lines(alice)]
    assert video("d0001") in ids and video("d0002") in ids
    assert len(ids) == len(set(ids)) == 4 + 8  # each item once: nothing else differed

    before = made(service)
    result = run(alice / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {}
    assert len(outputs(alice)) == 8  # bob's video downloaded from bob's task

    fresh = git_clone(alice, tmp_path / "fresh")
    assert not (fresh / ".hifly").exists()
    result = run(fresh / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {}
    assert outputs(fresh) == outputs(alice)


# 4. Two branches that added the same row ---------------------------------------------


def same_row_on_two_branches(service: Sandbox, tmp_path: Path) -> tuple[Path, Path, Path]:
    """origin, alice, bob: both clones added customer n0001 and ran (so it was made
    twice, once on each branch) and committed; alice then pulled bob's branch."""
    origin = campaign_repo(tmp_path / "origin", service, rows=2)
    alice = git_clone(origin, tmp_path / "alice")
    bob = git_clone(origin, tmp_path / "bob")
    before = made(service)
    for clone in (alice, bob):
        add_row(clone, "n0001", first=False)
        assert run(clone / "campaign.yaml", service).code == 0
        commit_all(clone, "the same new customer")
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 2}
    assert_merged_cleanly(alice, merge(alice, bob))
    return origin, alice, bob


def test_a_union_merge_with_two_lines_for_one_item_is_read_the_same_in_any_order(
    service: Sandbox, tmp_path: Path
) -> None:
    origin, alice, _ = same_row_on_two_branches(service, tmp_path)
    item = video("n0001")
    twins = [line for line in lock_lines(alice) if line["id"] == item]
    assert len(twins) == 2, twins
    assert twins[0]["task_id"] != twins[1]["task_id"]
    assert {line["id"] for line in lock_lines(alice)} - {item} == {
        line["id"] for line in lock_lines(origin)
    }

    # The same file with the two lines the other way round, in copies of a fresh clone.
    fresh = git_clone(alice, tmp_path / "fresh")
    swapped = clone_copy(fresh, tmp_path / "swapped")
    swap_lines(swapped / "campaign.lock", item)
    assert (swapped / "campaign.lock").read_bytes() != (fresh / "campaign.lock").read_bytes()
    chosen = status_of(fresh)[item]["task_id"]
    assert chosen in {line["task_id"] for line in twins}
    assert status_of(swapped)[item]["task_id"] == chosen

    # In the merged clone, whose own state knows one of the two tasks.
    mine = status_of(alice)[item]["task_id"]
    swap_lines(alice / "campaign.lock", item)
    assert status_of(alice)[item]["task_id"] == mine

    before = made(service)
    for clone in (alice, fresh, swapped):
        result = run(clone / "campaign.yaml", service)
        assert result.code == 0, f"{clone.name}: {result.stderr}"
        assert new(made(service), before) == {}, clone.name
    for clone, task in ((fresh, chosen), (swapped, chosen), (alice, mine)):
        rows = {r["item"]: r for r in report(clone)}
        assert rows[item]["task_id"] == task, clone.name
        output = clone / "out" / "campaign" / rows[item]["output"]
        assert output.read_bytes() == service.output_bytes(task), clone.name


def swap_lines(lock: Path, item: str) -> None:
    """Exchange the places of ``item``'s two lines in the lock file."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    at = [
        n
        for n, line in enumerate(lines)
        if line.startswith("{") and json.loads(line).get("id") == item
    ]
    assert len(at) == 2, at
    lines[at[0]], lines[at[1]] = lines[at[1]], lines[at[0]]
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def report(root: Path) -> list[dict[str, str]]:
    with (root / "out" / "campaign" / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_after_pulling_a_collaborators_record_a_rerun_with_nothing_to_do_keeps_it(
    service: Sandbox, tmp_path: Path
) -> None:
    _, alice, bob = same_row_on_two_branches(service, tmp_path)
    before = made(service)
    assert run(alice / "campaign.yaml", service).code == 0
    commit_all(alice, "record after the merge")
    committed = (alice / "campaign.lock").read_bytes()

    assert merge(bob, alice).returncode == 0  # a fast-forward
    assert (bob / "campaign.lock").read_bytes() == committed
    result = run(bob / "campaign.yaml", service)
    assert result.code == 0, result.stderr
    assert new(made(service), before) == {}  # nothing to do, nothing done
    changed = git_ok(bob, "diff", "--", "campaign.lock")
    assert (bob / "campaign.lock").read_bytes() == committed, changed


# 5. A rehearsal -------------------------------------------------------------------------


def test_a_rehearsal_keeps_its_own_lock_file_and_a_copy_makes_nothing_again(
    tmp_path: Path,
) -> None:
    with Sandbox(tmp_path / "world", FAST) as sandbox:  # says it is one
        campaign = Campaign(tmp_path / "c", rows=3, rate="1.2").write()
        result = run(campaign.manifest, sandbox)
        assert result.code == 0, result.stderr
        assert (campaign.root / "campaign.sandbox.lock").is_file()
        assert not (campaign.root / "campaign.lock").exists()
        originals = outputs(campaign.root, rehearsal=True)
        assert len(originals) == 3
        before = made(sandbox)
        assert before[f"create {VIDEO_CREATE}"] == 3

        copy = clone_copy(campaign.root, tmp_path / "copy")
        shown = cli("status", str(copy / "campaign.yaml"))
        assert shown.code == 3 and "recorded in campaign.sandbox.lock; add --sandbox" in (
            shown.stderr
        )
        assert cli("status", "--sandbox", str(copy / "campaign.yaml")).code == 0
        result = run(copy / "campaign.yaml", sandbox)
        assert result.code == 0, result.stderr
        assert new(made(sandbox), before) == {}
        assert outputs(copy, rehearsal=True) == originals
        assert not (copy / "campaign.lock").exists()
        assert json.loads((copy / "campaign.sandbox.lock").read_text("utf-8").splitlines()[0])
        # init's .gitignore keeps a sandbox's record out of git.
        (copy / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        git_ok(copy, "init", "--quiet", "-b", "main")
        assert git(copy, "check-ignore", "--quiet", "campaign.sandbox.lock").returncode == 0
    assert creates(sandbox)[VIDEO_CREATE] == 3


# 6. A run killed outright -----------------------------------------------------------------


def test_a_run_killed_outright_has_recorded_most_of_what_it_made(
    tmp_path: Path, store: Store
) -> None:
    """The lock file is written during a run too (every few seconds), so a SIGKILLed run
    whose state is then lost (its file, or its database) pays again only for what it made
    since the last write."""
    slow = dataclasses.replace(SERVICE, task_seconds=0.6, task_jitter=0.0, max_generating=2)
    with Sandbox(tmp_path / "world", slow) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=40, concurrency=2).write()
        proc = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (campaign.root / "campaign.lock").exists():
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            proc.kill()
            proc.wait()
        at_kill = creates(sandbox).get(VIDEO_CREATE, 0)
        recorded = [r for r in lock_lines(campaign.root) if r["id"].startswith("videos.")]
        assert recorded and all(r.get("task_id") for r in recorded)
        assert at_kill < campaign.rows, "the run was not killed half way"
        store.lose(campaign.root)
        again = run(campaign.manifest, sandbox)
        assert again.code == 0, again.stderr
        lost = at_kill - len(recorded)  # made after the last write: made again
        assert creates(sandbox)[VIDEO_CREATE] == at_kill + (campaign.rows - len(recorded))
        print(f"\nkilled with {at_kill} videos made, {len(recorded)} in the lock file, {lost} lost")


# 7. --recreate on one machine -------------------------------------------------------------


def test_an_item_made_again_on_one_machine_replaces_it_on_every_other(
    service: Sandbox, tmp_path: Path
) -> None:
    origin = campaign_repo(tmp_path / "origin", service, rows=2)
    alice = git_clone(origin, tmp_path / "alice")
    bob = git_clone(origin, tmp_path / "bob")
    for clone in (alice, bob):
        assert run(clone / "campaign.yaml", service).code == 0  # downloads, makes nothing
    before = made(service)
    again = cli("run", "--no-progress", "--recreate", video("c0001"), str(alice / "campaign.yaml"),
                sandbox=service)  # fmt: skip
    assert again.code == 0, again.stderr
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 1}
    commit_all(alice, "c0001 made again")
    new_task = status_of(alice)[video("c0001")]["task_id"]
    old_task = status_of(bob)[video("c0001")]["task_id"]
    assert new_task != old_task

    assert merge(bob, alice).returncode == 0
    assert plan_actions(bob)[video("c0001")] == "download"  # Bob's file is the old video
    assert run(bob / "campaign.yaml", service).code == 0
    assert new(made(service), before) == {f"create {VIDEO_CREATE}": 1}  # nothing more made
    assert status_of(bob)[video("c0001")]["task_id"] == new_task
    saved = bob / "out" / "campaign" / "videos" / "welcome" / "c0001.mp4"
    assert saved.read_bytes() == service.output_bytes(new_task)
    # A union merge that kept the old line beside the new one reads as the new one.
    lines = (bob / "campaign.lock").read_text(encoding="utf-8").splitlines()
    old_line = json.loads(next(ln for ln in lines if new_task in ln))
    old_line.update(task_id=old_task)
    old_line.pop("replaces")
    doubled = bob / "doubled"
    clone_copy(bob, doubled)
    (doubled / "campaign.lock").write_text(
        "\n".join([*lines, json.dumps(old_line, ensure_ascii=False)]) + "\n", encoding="utf-8"
    )
    assert status_of(doubled)[video("c0001")]["task_id"] == new_task


def test_the_lock_file_is_written_while_a_run_only_waits(tmp_path: Path) -> None:
    """With a long poll interval nothing happens for a while after the creates; the lock
    file is still written on time, and a kill then costs no clone again."""
    with Sandbox(tmp_path / "world", SERVICE) as sandbox:
        campaign = Campaign(tmp_path / "c", rows=2).write()
        fast = campaign.manifest.read_text("utf-8")
        slow = fast.replace("poll_interval: 0.05s", "poll_interval: 30s")
        campaign.manifest.write_text(slow.replace("poll_max: 0.5s", "poll_max: 30s"), "utf-8")
        proc = popen("run", "--no-progress", str(campaign.manifest), sandbox=sandbox)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (campaign.root / "campaign.lock").exists():
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
        clones = {k: v for k, v in creates(sandbox).items() if k != VIDEO_CREATE}
        assert clones == {"avatar/create_by_video": 1, "voice/create": 1}
        recorded = {r["id"]: r["status"] for r in lock_lines(campaign.root)}
        assert recorded["avatars.founder"] == recorded["voices.founder_voice"] == "running"
        shutil.rmtree(campaign.root / ".hifly")
        campaign.manifest.write_text(fast, "utf-8")
        assert run(campaign.manifest, sandbox).code == 0
        assert {k: v for k, v in creates(sandbox).items() if k != VIDEO_CREATE} == clones


def test_a_change_that_failed_to_be_made_then_undone_costs_nothing(
    service: Sandbox, tmp_path: Path
) -> None:
    """New footage whose avatar fails blocks the videos; the work made for the old
    footage stays recorded, and putting the old footage back makes nothing again."""
    campaign = Campaign(tmp_path / "c", rows=2).write()
    assert run(campaign.manifest, service).code == 0
    before = made(service)
    footage = campaign.root / "media" / "founder.mp4"
    original = footage.read_bytes()
    footage.write_bytes(make_mp4(3.0, "new footage"))
    service.set_faults(Faults(task_fail=1.0, seed=1))  # the new avatar's task fails
    failed = run(campaign.manifest, service)
    service.set_faults(Faults())
    assert failed.code == 1
    statuses = {r["id"]: r["status"] for r in lock_lines(campaign.root)}
    assert statuses["avatars.founder"] == statuses[video("c0001")] == "done"  # still recorded
    footage.write_bytes(original)
    actions = plan_actions(campaign.root)
    assert actions.pop("assets.founder_clip") == "recreate"  # uploaded again: uploads are free
    assert set(actions.values()) == {"skip"}
    spent = made(service)
    assert run(campaign.manifest, service).code == 0
    assert set(new(made(service), spent)) == {"upload url", "upload"}
    assert {k for k in new(spent, before) if k.startswith("create ")} <= {
        "create avatar/create_by_video"
    }
