"""The shipped campaigns and examples work as the README says: every manifest validates
and runs on the sandbox through the real CLI, the library example runs, the CI workflow
and the pre-commit hook hold what they promise."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hifly_batch.cli import build_parser
from hifly_batch.commands.init import GITATTRIBUTES
from hifly_batch.core.graph import build_graph
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.runner.lockfile import lock_path
from hifly_batch.sandbox.media_maker import read_duration
from tests.campaigns import cli
from tests.readme import ROOT

MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))
MEDIA_LIMIT = 200 * 1024
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/manifest.schema.json"


def copy_repo_campaigns(dest: Path) -> Path:
    """The repository's manifests/ and examples/ copied into ``dest`` (nothing run there)."""
    skip = shutil.ignore_patterns(".hifly", "out", "__pycache__", "*.sandbox.lock")
    for folder in ("manifests", "examples"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    return dest / "manifests"


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_three_campaigns_are_there() -> None:
    names = {m.name for m in MANIFESTS}
    assert {"quickstart.yaml", "personalized-welcome.yaml", "image-avatar.yaml"} <= names


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_starts_with_the_schema_line(manifest: Path) -> None:
    assert manifest.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates(manifest: Path) -> None:
    result = cli("validate", str(manifest))
    assert result.code == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


SPOKEN_1_0 = json.loads((ROOT / "tests" / "data" / "examples-spoken-1.0.json").read_text("utf-8"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_examples_speak_what_version_1_0_spoke_and_nothing_is_made_again(
    manifest: Path,
) -> None:
    """Each work's title and text as version 1.0 rendered them (recorded in
    ``tests/data/examples-spoken-1.0.json``) but for the whitespace around them, and the
    1.0 fingerprint still names the item, so a 1.0 state or lock file makes nothing."""
    campaign = load_campaign(manifest)
    items = {item.id: item for item in build_graph(campaign).items}
    spoken = {}
    for work in campaign.works:
        item = items[work.item_id]
        spoken[item.id] = {
            "title": work.title,
            "text": work.text,
            "fingerprint": item.legacy_fingerprint or item.fingerprint,
        }
    recorded = {
        item: {**said, "text": said["text"] and said["text"].strip()}
        for item, said in SPOKEN_1_0[manifest.name].items()
    }
    assert spoken == recorded


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_runs_on_the_sandbox(manifest: Path, tmp_path: Path) -> None:
    copied = copy_repo_campaigns(tmp_path) / manifest.name
    result = cli("run", "--sandbox", "--no-progress", str(copied), timeout=180)
    assert result.code == 0, result.stdout + result.stderr
    report = Path(re.search(r"^report: (.+)$", result.stdout, re.MULTILINE).group(1))
    assert report.is_relative_to(tmp_path)
    rows = read_report(report)
    assert rows and {r["status"] for r in rows} == {"done"}
    works = [r for r in rows if r["section"] in ("videos", "audios")]
    assert works
    for row in works:
        output = report.parent / row["output"]
        assert output.is_file() and output.stat().st_size > 0, row["item"]
        assert read_duration(output), f"{output} is not playable media"
    assert (report.parent / "report.html").is_file()


def test_personalized_welcome_makes_one_video_per_opted_in_customer(tmp_path: Path) -> None:
    copied = copy_repo_campaigns(tmp_path) / "personalized-welcome.yaml"
    result = cli("plan", "--json", str(copied))
    assert result.code == 0, result.stderr
    data_file = tmp_path / "examples" / "personalized-welcome" / "data" / "customers.csv"
    customers = read_report(data_file)
    wanted = {f"videos.welcome[{c['customer_id']}]" for c in customers if c["opt_in"] == "yes"}
    assert wanted and len(wanted) < len(customers)  # the `when` filter has work to do
    assert wanted <= set(re.findall(r'"(videos\.welcome\[[^]]+\])"', result.stdout))
    assert "videos.welcome[c004]" not in result.stdout


def test_image_avatar_feeds_an_audios_item_into_a_video() -> None:
    manifest = yaml.safe_load((ROOT / "manifests" / "image-avatar.yaml").read_text("utf-8"))
    audio_fed = [v for v in manifest["videos"].values() if v.get("audio") in manifest["audios"]]
    assert audio_fed and all("image" in a for a in manifest["avatars"].values())
    assert all("public" in v for v in manifest["voices"].values())


def example_files() -> list[Path]:
    return [p for p in (ROOT / "examples").rglob("*") if p.is_file() and "out" not in p.parts]


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_files_are_small(path: Path) -> None:
    assert path.stat().st_size < MEDIA_LIMIT


@pytest.mark.parametrize(
    "path",
    [p for p in example_files() if p.suffix in (".mp3", ".wav", ".m4a", ".mp4")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_example_media_are_readable_and_long_enough(path: Path) -> None:
    seconds = read_duration(path)
    assert seconds is not None and 5.0 <= seconds <= 180.0, seconds


# --- examples/library_usage.py ------------------------------------------------


def run_library_example(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library_usage.py"), *args, "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_library_example_plans_runs_with_progress_and_reports(tmp_path: Path) -> None:
    first = run_library_example(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "create    videos.welcome[c001]" in first.stdout
    assert "9/9 settled: 9 done, 0 failed" in first.stdout  # the progress callback
    out = tmp_path / "manifests" / "out" / "quickstart.sandbox"  # a rehearsal's outputs
    assert {r["status"] for r in read_report(out / "report.csv")} == {"done"}
    assert (out / "report.html").is_file()
    again = run_library_example(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "totals: 9 skip" in again.stdout


# --- examples/github-actions.yml ----------------------------------------------


WORKFLOWS = (
    "github-actions.yml",
    "github-actions-postgres.yml",
)  # the state in a file, in a database


@pytest.fixture(params=WORKFLOWS)
def flow(request: pytest.FixtureRequest) -> dict[str, Any]:
    return workflow(request.param)


def workflow(name: str = WORKFLOWS[0]) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / name).read_text("utf-8"))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def hifly_commands(job: dict[str, Any]) -> list[list[str]]:
    """The hifly-batch command lines of a job's run steps, environment names expanded."""
    found = []
    for step in steps(job):
        for line in str(step.get("run", "")).splitlines():
            line = line.replace('"$MANIFEST"', "m.yaml")
            if line.strip().startswith("hifly-batch "):
                found.append(shlex.split(line)[1:])
    return found


def test_workflow_validates_on_every_push(flow: dict[str, Any]) -> None:
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and triggers["push"] in (None, {})
    validate = flow["jobs"]["validate"]
    assert "if" not in validate
    commands = hifly_commands(validate)
    assert [c[0] for c in commands] == ["validate"]


def test_workflow_runs_on_the_default_branch_with_the_secret_token(flow: dict[str, Any]) -> None:
    job = flow["jobs"]["run"]
    assert "default_branch" in job["if"] and job["needs"] == "validate"
    runs = [s for s in steps(job) if "hifly-batch run" in str(s.get("run", ""))]
    assert len(runs) == 1
    assert runs[0]["env"]["HIFLY_TOKEN"] == "${{ secrets.HIFLY_TOKEN }}"
    assert "HIFLY_TOKEN" not in str(runs[0]["run"])  # never on the command line


def test_workflow_caches_the_state_and_uploads_the_report(flow: dict[str, Any]) -> None:
    job = flow["jobs"]["run"]
    by_action = {str(s.get("uses", "")).split("@")[0]: s for s in steps(job)}
    cache = by_action["actions/cache"]
    assert cache["with"]["path"].endswith(".hifly") and cache["with"]["restore-keys"]
    names = [str(s.get("name", s.get("uses"))) for s in steps(job)]
    assert names.index("Restore state") < names.index("Run")
    upload = by_action["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert "report.csv" in upload["with"]["path"] and "report.html" in upload["with"]["path"]


def test_workflow_commits_the_manifests_lock_file_one_run_at_a_time(flow: dict[str, Any]) -> None:
    job = flow["jobs"]["run"]
    assert flow["permissions"]["contents"] == "write"
    assert "github.ref" not in flow["concurrency"]["group"]  # one run of the campaign at once
    assert flow["concurrency"]["cancel-in-progress"] is False
    manifest = Path(flow["env"]["MANIFEST"])
    assert flow["env"]["LOCK_FILE"] == str(lock_path(manifest, sandbox=False))
    names = [str(s.get("name", s.get("uses"))) for s in steps(job)]
    commit = steps(job)[names.index("Commit the lock file")]
    assert names.index("Run") < names.index("Commit the lock file")
    assert commit["if"] == "always()"  # a failed run made things too


def test_the_database_workflow_takes_its_connection_and_password_from_secrets() -> None:
    job = workflow("github-actions-postgres.yml")["jobs"]["run"]
    install = next(s for s in steps(job) if s.get("name") == "Install hifly-batch")
    assert install["run"] == 'pip install "$HIFLY_BATCH[postgres]"'
    reading = [s for s in steps(job) if str(s.get("run", "")).startswith("hifly-batch ")]
    assert [s["name"] for s in reading] == ["Plan", "Run"]
    for step in reading:  # every command that reads the state reads the database's
        assert step["env"]["HIFLY_STATE"] == "${{ secrets.HIFLY_STATE }}"
        assert step["env"]["PGPASSWORD"] == "${{ secrets.PGPASSWORD }}"
        assert "HIFLY_STATE" not in step["run"] and "PGPASSWORD" not in step["run"]


def test_the_commit_step_pushes_the_lock_file_and_merges_a_teammates_push(
    tmp_path: Path,
) -> None:
    step = next(
        s for s in steps(workflow()["jobs"]["run"]) if s.get("name") == "Commit the lock file"
    )
    env = {**os.environ, "LOCK_FILE": "c.lock", "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip

    def git(*args: str, cwd: Path) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    origin, runner, teammate = tmp_path / "origin.git", tmp_path / "runner", tmp_path / "mate"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    git("clone", "-q", str(origin), str(teammate), cwd=tmp_path)
    (teammate / ".gitattributes").write_text(GITATTRIBUTES)
    (teammate / "c.lock").write_text('{"h": 1}\n{"id": "b"}\n')
    git("add", ".", cwd=teammate)
    git("commit", "-qm", "start", cwd=teammate)
    git("push", "-q", "origin", "HEAD:main", cwd=teammate)
    git("clone", "-q", str(origin), str(runner), cwd=tmp_path)
    # While the job runs, a teammate pushes a line; the job's run adds another.
    (teammate / "c.lock").write_text('{"h": 1}\n{"id": "a"}\n{"id": "b"}\n')
    git("commit", "-qam", "mine", cwd=teammate)
    git("push", "-q", "origin", "HEAD:main", cwd=teammate)
    (runner / "c.lock").write_text('{"h": 1}\n{"id": "b"}\n{"id": "c"}\n')
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=runner, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    pushed = git("show", "main:c.lock", cwd=origin).splitlines()
    assert sorted(pushed) == sorted(['{"h": 1}', '{"id": "a"}', '{"id": "b"}', '{"id": "c"}'])
    again = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=runner, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0 and git("rev-list", "--count", "main", cwd=origin) == "3\n"


def test_workflow_commands_are_real_commands() -> None:
    parser = build_parser()
    jobs = workflow()["jobs"].values()
    commands = [c for job in jobs for c in hifly_commands(job)]
    assert len(commands) >= 3
    for command in commands:
        parser.parse_args(command)  # exits with code 2 on an unknown command or option


# --- .pre-commit-hooks.yaml ----------------------------------------------------


def hook() -> dict[str, Any]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))
    [found] = [h for h in hooks if h["id"] == "hifly-batch-validate"]
    return found


def test_pre_commit_hook_entry_is_a_real_command() -> None:
    entry = shlex.split(hook()["entry"])
    assert hook()["language"] == "python" and hook()["pass_filenames"] is False
    scripts = re.findall(r'^(\S+) = "', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert entry[0] in scripts
    args = build_parser().parse_args(entry[1:])
    assert args.command == "validate" and args.all_manifests


def test_pre_commit_hook_runs_on_manifests_and_every_file_they_use() -> None:
    pattern = re.compile(hook()["files"])
    used = [p for p in (ROOT / "examples").rglob("*") if "/" not in p.suffix]
    used = [p for p in used if p.parent.name in ("data", "templates", "media")]
    assert {p.suffix for p in used} >= {".csv", ".j2", ".mp4", ".wav", ".mp3", ".png"}
    for path in [*MANIFESTS, *used]:
        assert pattern.search(str(path.relative_to(ROOT))), path
    assert pattern.search("spring/campaign.yaml") and pattern.search("media/Clip.MOV")
    for other in ("README.md", "hifly_batch/cli.py", "out/campaign/report.html"):
        assert not pattern.search(other), other


def test_pre_commit_hook_fails_a_commit_that_breaks_a_data_row_or_a_template(
    tmp_path: Path,
) -> None:
    """pre-commit runs the entry alone (no file names) in the repository's root: it finds
    every manifest there and validates each with the data and templates it uses."""
    entry = shlex.split(hook()["entry"])[1:]
    copy_repo_campaigns(tmp_path)
    (tmp_path / "examples" / "notes.yml").write_text("jobs: {}\n", encoding="utf-8")
    result = cli(*entry, cwd=tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        f"manifests/{m.name}" for m in MANIFESTS
    ]  # each manifest once, and no other YAML file
    data = tmp_path / "examples" / "personalized-welcome" / "data" / "customers.csv"
    with data.open("a", encoding="utf-8") as fh:
        fh.write("c001,Again,Paris,lamp,yes\n")  # a key twice
    template = tmp_path / "examples" / "quickstart" / "templates" / "welcome.txt.j2"
    template.write_text("{{ row.name ", encoding="utf-8")
    result = cli(*entry, cwd=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    assert "personalized-welcome.yaml" in result.stderr and "c001" in result.stderr
    assert "quickstart.yaml" in result.stderr and "welcome.txt.j2" in result.stderr
