"""A campaign whose state is in PostgreSQL, through the real CLI on the sandbox: a run,
a rerun that makes nothing, and the commands that read the state from it."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns import cli
from tests.test_examples import copy_repo_campaigns


def test_a_run_keeps_its_state_in_the_database_and_a_rerun_makes_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    manifest = copy_repo_campaigns(tmp_path) / "quickstart.yaml"
    first = cli("run", "--sandbox", "--no-progress", "--state", pg_url, str(manifest))
    assert first.code == 0, first.stderr
    assert not (manifest.parent / ".hifly" / "quickstart.sandbox.state.db").exists()
    plan = cli("plan", "--sandbox", "--json", "--state", pg_url, str(manifest))
    assert plan.code == 0, plan.stderr
    assert '"create"' not in plan.stdout and '"skip"' in plan.stdout
    status = cli("status", "--sandbox", "--state", pg_url, str(manifest))
    assert status.code == 0 and "done" in status.stdout, status.stdout + status.stderr
    again = cli("run", "--sandbox", "--no-progress", "--state", pg_url, str(manifest))
    assert again.code == 0, again.stderr
    assert pg_url.split("?")[0] not in first.stderr + again.stderr + status.stdout
