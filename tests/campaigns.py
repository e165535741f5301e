"""Real campaigns on disk for end-to-end tests, and the CLI run as a subprocess."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hifly_batch.core.graph import ItemKind
from hifly_batch.runner.creates import CREATE_KINDS
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_file import FileState
from hifly_batch.runner.state_postgres import PostgresState, is_database
from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_mp4, make_wav
from tests.conftest import SECRET_TOKEN

TEMPLATE = "{{ row.name }}您好，感谢您选择{{ vars.brand }}。您所在的城市是{{ row.city }}。"


@dataclass
class Campaign:
    """A personalized campaign: cloned avatar and voice, one video per CSV row."""

    root: Path
    rows: int = 5
    rate: str = "1.0"
    template: str = TEMPLATE
    concurrency: int = 4
    task_timeout: str = "2h"
    max_attempts: int = 2
    extra_yaml: str = ""
    names: list[str] = field(default_factory=list)
    # Runs against a sandbox that says it is one (the `sandbox` fixture) are rehearsals,
    # which write under out/campaign.sandbox/; False for a stand-in of the real service.
    rehearsal: bool = True

    @property
    def manifest(self) -> Path:
        return self.root / "campaign.yaml"

    @property
    def output_dir(self) -> Path:
        return self.root / "out" / ("campaign.sandbox" if self.rehearsal else "campaign")

    def write(self) -> Campaign:
        media = self.root / "media"
        media.mkdir(parents=True, exist_ok=True)
        if not (media / "founder.mp4").exists():
            (media / "founder.mp4").write_bytes(make_mp4(3.0, "founder"))
            (media / "voice.wav").write_bytes(make_wav(8.0, "voice"))
        (self.root / "welcome.txt.j2").write_text(self.template, encoding="utf-8")
        self._write_rows()
        self.manifest.write_text(self._yaml(), encoding="utf-8")
        return self

    def _write_rows(self) -> None:
        with (self.root / "customers.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["customer_id", "name", "city"])
            for n in range(1, self.rows + 1):
                writer.writerow([f"c{n:04d}", f"客户{n}", "上海"])

    def _yaml(self) -> str:
        return f"""\
version: 1
name: campaign
settings:
  concurrency: {self.concurrency}
  poll_interval: 0.05s
  poll_max: 0.5s
  task_timeout: {self.task_timeout}
  max_attempts: {self.max_attempts}
vars:
  brand: 飞影
assets:
  founder_clip: {{file: media/founder.mp4}}
  voice_sample: {{file: media/voice.wav}}
data:
  customers:
    csv: customers.csv
    key: "{{{{ row.customer_id }}}}"
avatars:
  founder: {{video: founder_clip, title: 创始人}}
voices:
  founder_voice: {{audio: voice_sample, title: 创始人声音, rate: {self.rate}}}
videos:
  welcome:
    for_each: customers
    avatar: founder
    voice: founder_voice
    text_file: welcome.txt.j2
    title: "欢迎{{{{ row.name }}}}"
{self.extra_yaml}"""


def child_env(sandbox: Sandbox | None = None) -> dict[str, str]:
    """The environment of a CLI run: this process's, without HIFLY_* settings but
    ``HIFLY_STATE``, which only a test sets (the ``store`` fixture: a database); pointed at
    ``sandbox`` when one is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIFLY_") or k == "HIFLY_STATE"}
    if sandbox is not None:
        env["HIFLY_BASE_URL"], env["HIFLY_TOKEN"] = sandbox.base_url, sandbox.token
    return env


def reader_shell(folder: Path) -> dict[str, str]:
    """The environment of a shell where ``hifly-batch`` is the tree under test (a script
    in ``folder/bin``), with no token and an API address where nothing answers."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "hifly-batch"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m hifly_batch "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = child_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["HIFLY_BASE_URL"] = "http://127.0.0.1:9"
    return env


def in_shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` run by bash as a reader would type it."""
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli(
    *args: str, sandbox: Sandbox | None = None, cwd: Path | None = None, timeout: float = 120
) -> Result:
    """Run ``python -m hifly_batch ARGS`` pointed at ``sandbox``; returns code and output."""
    env = child_env(sandbox)
    proc = subprocess.run(
        [sys.executable, "-m", "hifly_batch", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    # pytest never sees a child's output, so the suite's token scan happens here.
    assert SECRET_TOKEN not in proc.stdout + proc.stderr, "the token was printed"
    return Result(proc.returncode, proc.stdout, proc.stderr)


def popen(*args: str, sandbox: Sandbox) -> subprocess.Popen[str]:
    env = child_env(sandbox)
    return subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def report_rows(campaign: Campaign) -> list[dict[str, str]]:
    with (campaign.output_dir / "report.csv").open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def creates(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.counters().creates)


# Helpers for the reliability tests (crash, soak, disk) -------------------------


def state_path(campaign: Campaign) -> Path:
    """Where a run keeps the campaign's state: ``.hifly/<name>.state.db`` beside the manifest."""
    return campaign.root / ".hifly" / "campaign.state.db"


def state_database() -> str | None:
    """The database the runs keep their state in (``HIFLY_STATE``); None for the file."""
    url = os.environ.get("HIFLY_STATE")
    return url if url and is_database(url) else None


def read_state(campaign: Campaign) -> dict[str, Record]:
    """Every record, read through a read-only store as ``status`` reads it ({} before any):
    from the state file, or from the database when ``HIFLY_STATE`` names one."""
    url = state_database()
    if url is not None:
        return database_records(url)
    if not state_path(campaign).exists():
        return {}
    with FileState(state_path(campaign), readonly=True) as store:
        return store.records()


def database_records(url: str, campaign: str = "campaign") -> dict[str, Record]:
    """A campaign's records in a database: those made on a sandbox, else on the service."""
    for api in ("sandbox", "service"):
        with PostgresState(url, campaign, api, readonly=True) as store:
            records = store.records()
        if records:
            return records
    return {}


def lose_state(campaign: Campaign) -> None:
    """Delete the campaign's state, as a new machine or an evicted CI cache has none:
    ``.hifly/`` beside the manifest and, when the state is in a database, the campaign's
    rows there (the database itself, shared, stays)."""
    shutil.rmtree(campaign.root / ".hifly")
    url = state_database()
    if url is not None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as db, db.transaction():
            for table in ("hifly_items", "hifly_campaigns"):
                db.execute(f"DELETE FROM {table} WHERE campaign = %s", ("campaign",))


def is_temporary(path: Path) -> bool:
    """A download's temporary file (``.hifly-PID-N.part``) or the report's (``.name.tmp``)."""
    return path.name.startswith(".")


def output_files(campaign: Campaign) -> list[Path]:
    """Files under the output folder at a final (not hidden) name."""
    if not campaign.output_dir.exists():
        return []
    return sorted(p for p in campaign.output_dir.rglob("*") if p.is_file() and not is_temporary(p))


def temporary_files(campaign: Campaign) -> list[Path]:
    """Hidden temporary files left under the output folder."""
    if not campaign.output_dir.exists():
        return []
    return sorted(p for p in campaign.output_dir.rglob(".*") if p.is_file())


def create_endpoint(record: Record) -> str | None:
    """The create endpoint (short name) an item's kind uses; None for items without one."""
    kind = ItemKind(record.kind)
    endpoint = kind.endpoint
    return endpoint.short if endpoint is not None and kind in CREATE_KINDS else None
