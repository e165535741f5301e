"""``hifly-batch status``: the table with its header, what did not finish, and ``--json``.
(Its "Nothing to do" is seen in test_summary, after a campaign that was made whole.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hifly_batch.sandbox import Faults, Sandbox
from tests.campaigns import Campaign, cli, report_rows

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def test_status_shows_a_table_the_unfinished_and_json_with_one_status_and_iso_times(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    campaign = Campaign(tmp_path / "c", rows=2).write()
    manifest = str(campaign.manifest)
    sandbox.set_faults(Faults(task_fail=1.0))
    assert cli("run", "--no-progress", manifest, sandbox=sandbox).code == 1

    shown = cli("status", manifest)
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "item", "status", "task_id", "resource_id", "output", "attempts", "error"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split(maxsplit=6) for line in lines[1:7]}
    assert rows["assets.founder_clip"][1:3] == ["done", "-"]
    assert rows["assets.founder_clip"][3].startswith("file_")  # its resource id
    avatar = rows["avatars.founder"]
    assert avatar[1] == "failed" and avatar[2].isdigit() and avatar[3:6] == ["-", "-", "1"]
    assert re.fullmatch(r"2015 avatar clone failed: \S.*", avatar[6]), avatar
    assert rows["videos.welcome[c0001]"][1] == "blocked"
    # Then what did not finish, as at the end of a run, without the reports' paths.
    assert "code 2015: avatar clone failed (数字人克隆失败), 1 item\n" in shown.stdout
    assert f"\n  hifly-batch run --retry-failed {manifest}\n" in shown.stdout
    assert "waiting for avatars.founder (failed), voices.founder_voice (failed):" in shown.stdout
    assert "report:" not in shown.stdout

    as_json = cli("status", "--json", manifest)
    assert as_json.code == 0, as_json.stderr
    items = {row["item"]: row for row in json.loads(as_json.stdout)}
    report = {row["item"]: row for row in report_rows(campaign)}
    for item, row in items.items():
        assert "state" not in row and row["status"] == report[item]["status"]
        for key in ("started_at", "finished_at"):  # as report.csv has them
            assert row[key] == (report[item][key] or None), (item, key)
    founder = items["avatars.founder"]
    assert ISO_UTC.fullmatch(founder["started_at"]) and ISO_UTC.fullmatch(founder["finished_at"])
    assert founder["error_code"] == 2015
    assert (founder["error_meaning"], founder["error_meaning_zh"]) == (
        "avatar clone failed", "数字人克隆失败"
    )  # fmt: skip
    assert "error_meaning" not in items["assets.founder_clip"]
