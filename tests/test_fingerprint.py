"""Fingerprints: equal for equal inputs, changed by any input, stable across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hifly_batch.core.fingerprint import Ref, canonical_json, item_fingerprint
from hifly_batch.core.graph import build_graph
from hifly_batch.manifest.loader import load_campaign
from tests.manifest_helpers import REPO, campaign


def fingerprints(path: Path) -> dict[str, str]:
    return {item.id: item.fingerprint for item in build_graph(load_campaign(path))}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before if before[k] != after.get(k)}


def test_equal_inputs_equal_fingerprints(tmp_path: Path) -> None:
    assert fingerprints(campaign(tmp_path / "a")) == fingerprints(campaign(tmp_path / "b"))


def test_canonical_json_ignores_dict_order() -> None:
    assert canonical_json({"b": 1, "a": "飞"}) == canonical_json({"a": "飞", "b": 1})
    assert canonical_json({"a": "飞"}) == '{"a":"飞"}'.encode()
    one = item_fingerprint("k", {"x": Ref("a"), "y": 1}, lambda _: "f")
    assert one == item_fingerprint("k", {"y": 1, "x": Ref("a")}, lambda _: "f")
    assert one != item_fingerprint("k", {"y": 1, "x": Ref("a")}, lambda _: "g")


def test_row_value_changes_only_that_row(tmp_path: Path) -> None:
    before = fingerprints(campaign(tmp_path / "a"))
    csv = "customer_id,name,city\nc1,张伟,上海\nc2,Alicia,London\nc3,李娜,成都\n"
    after = fingerprints(campaign(tmp_path / "b", csv=csv))
    assert changed(before, after) == {"videos.welcome[c2]"}


def test_template_change_changes_every_row(tmp_path: Path) -> None:
    before = fingerprints(campaign(tmp_path / "a"))
    after = fingerprints(campaign(tmp_path / "b", template="{{ row.name }}，您好！\n"))
    assert changed(before, after) == {f"videos.welcome[c{i}]" for i in (1, 2, 3)}


def test_voice_sample_bytes_change_the_clone_and_its_users(tmp_path: Path) -> None:
    before = fingerprints(campaign(tmp_path / "a"))
    path = campaign(tmp_path / "b")
    sample = path.parent / "media" / "voice.wav"
    data = bytearray(sample.read_bytes())
    data[-1] ^= 0x01  # one sample's low bit: same duration, other bytes
    sample.write_bytes(bytes(data))
    after = fingerprints(path)
    assert changed(before, after) == {"assets.sample", "voices.cloned"} | {
        f"videos.welcome[c{i}]" for i in (1, 2, 3)
    }


def test_voice_setting_changes_users_not_the_clone(tmp_path: Path) -> None:
    graph_a = build_graph(load_campaign(campaign(tmp_path / "a")))
    graph_b = build_graph(
        load_campaign(campaign(tmp_path / "b", replace={"rate: 1.1": "rate: 1.2"}))
    )
    voice_a, voice_b = graph_a["voices.cloned"], graph_b["voices.cloned"]
    assert voice_a.fingerprint == voice_b.fingerprint
    assert voice_a.settings_fingerprint != voice_b.settings_fingerprint
    before = {i.id: i.fingerprint for i in graph_a}
    after = {i.id: i.fingerprint for i in graph_b}
    assert changed(before, after) == {f"videos.welcome[c{i}]" for i in (1, 2, 3)}


def test_upstream_avatar_title_changes_dependents(tmp_path: Path) -> None:
    before = fingerprints(campaign(tmp_path / "a"))
    after = fingerprints(
        campaign(tmp_path / "b", replace={"{video: clip}": "{video: clip, title: 新}"})
    )
    assert changed(before, after) == {"avatars.founder"} | {
        f"videos.welcome[c{i}]" for i in (1, 2, 3)
    }


def test_output_path_is_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    before = fingerprints(campaign(tmp_path / "a"))
    after = fingerprints(
        campaign(
            tmp_path / "b", replace={"    title:": "    output: 'w/{{ key }}.mp4'\n    title:"}
        )
    )
    assert before == after


def test_stable_across_processes() -> None:
    code = (
        "import json, sys; from pathlib import Path;"
        "from hifly_batch.core.graph import build_graph;"
        "from hifly_batch.manifest.loader import load_campaign;"
        "g = build_graph(load_campaign(Path(sys.argv[1])));"
        "print(json.dumps({i.id: i.fingerprint for i in g}))"
    )
    manifest = REPO / "manifests" / "quickstart.yaml"
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code, str(manifest)],
            capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=60,
        )  # fmt: skip
        results.append(json.loads(done.stdout))
    assert results[0] == results[1] == fingerprints(manifest)
