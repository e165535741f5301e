"""``hifly-batch init``: the scaffold validates and runs on the sandbox as created, and an
occupied folder is refused without writing anything."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from hifly_batch.campaign import Campaign
from hifly_batch.commands.init import WRITTEN, campaign_name, scaffold, summary
from hifly_batch.sandbox.media_maker import read_duration
from tests.campaigns import cli, in_shell, reader_shell


def test_init_lists_what_it_wrote_and_the_next_commands_which_all_work(tmp_path: Path) -> None:
    folder = tmp_path / "spring-welcome"
    created = cli("init", "spring-welcome", cwd=tmp_path)
    assert created.code == 0, created.stderr
    lines = created.stdout.splitlines()
    assert lines[0] == "created spring-welcome/ with:"
    listed = [line.split()[0] for line in lines[1 : lines.index("next:")]]
    assert listed == list(WRITTEN)  # one line per file, relative to the folder
    assert sorted(listed) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )
    steps = [line.split("#")[0].strip() for line in lines[lines.index("next:") + 1 :]]
    assert steps[0] == "cd spring-welcome" and "hifly-batch run --sandbox campaign.yaml" in steps
    settings = Campaign.load(folder / "campaign.yaml").manifest.settings
    assert (settings.poll_interval, settings.poll_max) == (5.0, 60.0)  # the service's pace

    # The steps as printed; the rehearsal polls at the sandbox's pace, not the service's.
    manifest = folder / "campaign.yaml"
    text = manifest.read_text(encoding="utf-8").replace("poll_interval: 5s", "poll_interval: 0.1s")
    manifest.write_text(text.replace("poll_max: 60s", "poll_max: 0.5s"), encoding="utf-8")
    env = reader_shell(tmp_path)
    for step in steps[1:]:
        done = in_shell(step, folder, env)
        assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
    out = folder / "out" / "spring-welcome.sandbox"  # a rehearsal's outputs
    with (out / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["status"] for r in rows} == {"done"}
    videos = [r for r in rows if r["section"] == "videos"]
    assert [r["key"] for r in videos] == ["c001", "c002"]  # c003 opted out
    assert all((out / r["output"]).stat().st_size > 0 for r in videos)
    assert (out / "report.html").is_file()


def test_init_in_the_current_folder_says_no_cd(tmp_path: Path) -> None:
    created = cli("init", ".", cwd=tmp_path)
    assert created.code == 0 and "  cd " not in created.stdout
    assert summary(Path("x"), cd=True).splitlines()[-4] == "  cd x"


def test_git_ignores_state_outputs_and_sandbox_records_and_union_merges_the_lock_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "c"
    assert cli("init", str(folder)).code == 0
    subprocess.run(["git", "init", "-q", str(folder)], check=True)

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True)
        return done.stdout

    paths = [".hifly/campaign.state.db", "out/campaign/welcome/c001.mp4", "campaign.sandbox.lock",
             ".campaign.lock.x1y2.tmp", "campaign.lock", "campaign.yaml"]  # fmt: skip
    ignored = git("check-ignore", *paths).split()
    assert ignored == paths[:4]  # campaign.lock and the manifest are committed
    assert git("check-attr", "merge", "campaign.lock").strip() == "campaign.lock: merge: union"


def test_scaffold_files_and_media(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "c")).code == 0
    folder = tmp_path / "c"
    for name in ("campaign.yaml", "data/customers.csv", "templates/welcome.txt.j2"):
        assert (folder / name).read_text(encoding="utf-8").strip(), name
    assert 5.0 <= (read_duration(folder / "media" / "voice.wav") or 0) <= 180.0
    assert read_duration(folder / "media" / "presenter.mp4")
    schema = json.loads((folder / "manifest.schema.json").read_text(encoding="utf-8"))
    assert schema["title"] == "hifly-batch manifest"
    first = (folder / "campaign.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=manifest.schema.json"


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("init", str(tmp_path))
    assert result.code == 2
    assert f"{tmp_path} is not empty; nothing was written" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "campaign"
    target.write_text("x")
    result = cli("init", str(target))
    assert result.code == 2 and "is a file" in result.stderr


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("spring-welcome", "spring-welcome"),
        ("夏季促销", "夏季促销"),
        ("my campaign!", "my-campaign-"),
        (".hidden", "hidden"),
        ("...", "campaign"),
    ],
)
def test_campaign_name_is_a_valid_manifest_name(tmp_path: Path, folder: str, name: str) -> None:
    assert campaign_name(tmp_path / folder) == name


def test_scaffold_is_the_same_each_time() -> None:
    assert scaffold("x") == scaffold("x")
