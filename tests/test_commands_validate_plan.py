"""The validate and plan commands, in-process."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hifly_batch.cli import build_parser, main
from hifly_batch.commands.plan import plan
from hifly_batch.commands.validate import validate
from hifly_batch.core.graph import build_graph
from hifly_batch.core.lifecycle import Status
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_file import FileState
from hifly_batch.sandbox import Sandbox
from tests.campaigns import Campaign, cli
from tests.manifest_helpers import BASE, INVALID, REPO, campaign, run

QUICKSTART = REPO / "manifests" / "quickstart.yaml"


def test_validate_valid_manifests() -> None:
    result = run(validate, [QUICKSTART])
    assert result.code == 0
    assert result.out.startswith(f"{QUICKSTART}: valid (9 items: 2 assets")
    assert result.err == ""


def test_validate_many_reports_each() -> None:
    bad = INVALID / "schema_version.yaml"
    result = run(validate, [QUICKSTART, bad])
    assert result.code == 2
    assert "valid" in result.out
    assert f"{bad}: 1 error" in result.err


def test_plan_text_lists_changes_then_totals_and_all_adds_counts(tmp_path: Path) -> None:
    result = run(plan, QUICKSTART, state=str(tmp_path / "state.db"))
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"plan for {QUICKSTART} against the HiFly API at https://hfw-api.hifly.cc"
    assert lines[1].split()[:3] == ["create", "assets.founder_clip", "upload"]
    assert lines[-3:-1] == ["", "Plan: 9 to create."]
    assert lines[-1].startswith("Estimated cost: ~")  # 3 videos and an audio
    every = run(plan, QUICKSTART, every=True, state=str(tmp_path / "state.db")).out.splitlines()
    assert every[:10] == lines[:10] and every[-1] == lines[-1]
    assert every[-4].split() == ["total", "9"]
    assert any(line.split()[:2] == ["videos", "3"] for line in every)


def test_plan_json_and_prior_state(tmp_path: Path) -> None:
    path = campaign(tmp_path)
    graph = build_graph(load_campaign(path))
    records = [
        Record(
            item.id,
            item.section,
            item.kind.value,
            status=Status.DONE,
            fingerprint=item.fingerprint,
            settings_fingerprint=item.settings_fingerprint or "",
        )
        for item in graph
    ]
    records = [
        replace(r, status=Status.FAILED, fingerprint="old") if r.item == "videos.welcome[c1]" else r
        for r in records
    ]
    with FileState(tmp_path / ".hifly" / "case.state.db") as store:
        store.put_many(records)
    result = run(plan, path, as_json=True)
    document = json.loads(result.out)
    assert document["totals"] == {"skip": 8, "recreate": 1}
    assert document["counts"]["videos"] == {"recreate": 1, "skip": 2}
    assert [i["id"] for i in document["items"]][:2] == ["assets.clip", "assets.sample"]
    assert document["changes"] is True
    assert document["target"] == {"sandbox": False, "base_url": "https://hfw-api.hifly.cc"}
    text = run(plan, path, sandbox=False).out.splitlines()
    assert text[1].split()[:2] == ["recreate", "videos.welcome[c1]"]
    assert text[2:4] == ["", "Plan: 1 to recreate, 8 unchanged."]  # the unchanged are not listed
    assert text[4].startswith("Estimated cost: ~2 credits (1 video_by_tts ~2)")


def test_plan_errors_exit_2_or_3_and_1_with_detailed_exitcode(tmp_path: Path) -> None:
    result = run(plan, INVALID / "voice_cycle.yaml")
    assert result.code == 2
    assert "cycle: voices.cloned → audios.speech → voices.cloned" in result.err
    assert run(plan, INVALID / "voice_cycle.yaml", detailed_exitcode=True).code == 1
    state = str(tmp_path / "s.db")
    bad_url = ["plan", "--state", state, "--base-url", "ftp://host", str(QUICKSTART)]
    for flags, code in (([], 3), (["--detailed-exitcode"], 1)):
        result = run(main, [*bad_url, *flags], {})
        assert result.code == code and "'ftp://host' is not an http(s) URL" in result.err


def test_plan_names_its_target_and_run_dry_run_prints_the_same(tmp_path: Path) -> None:
    parser, state = build_parser(), str(tmp_path / "s.db")
    url = "http://127.0.0.1:9"
    for given, env, said in (
        (["--sandbox"], {"HIFLY_BASE_URL": url}, "the sandbox (--sandbox)"),
        (["--base-url", url], {"HIFLY_BASE_URL": "https://elsewhere"}, f"the HiFly API at {url}"),
        ([], {"HIFLY_BASE_URL": url}, f"the HiFly API at {url}"),
    ):
        args = parser.parse_args(["plan", "--state", state, *given, str(QUICKSTART)])
        shown = run(args.handler, args, env).out
        assert shown.splitlines()[0] == f"plan for {QUICKSTART} against {said}"
        args = parser.parse_args(["run", "--dry-run", "--state", state, *given, str(QUICKSTART)])
        assert run(args.handler, args, env).out == shown


def test_commands_register_with_the_cli_contract(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["validate", str(QUICKSTART)])
    assert run(args.handler, args, {}).code == 0
    args = parser.parse_args(["plan", "--json", "--state", str(tmp_path / "s.db"), str(QUICKSTART)])
    assert json.loads(run(args.handler, args, {}).out)["totals"] == {"create": 9}


def test_quickstart_media_is_small_and_real() -> None:
    from hifly_batch.manifest.media import audio_seconds

    media = REPO / "examples" / "quickstart" / "media"
    for file in media.iterdir():
        assert file.stat().st_size < 200_000
    seconds = audio_seconds(media / "voice.wav")
    assert seconds is not None and 6 <= seconds <= 10


LONG = "来到我们的春季新品发布会现场"  # 14 characters: with Alice, 21


def test_validate_says_every_fault_in_one_pass(tmp_path: Path) -> None:
    """An unknown setting and a wrong reference do not hide a title too long in a row."""
    manifest = (
        BASE.replace("name: case\n", "name: case\nsettings: {concurency: 4}\n")
        .replace("avatar: founder", "avatar: nobody")
        .replace(
            'title: "欢迎{{ row.name }}"', 'title: "欢迎{{ row.name }}来到我们的春季新品发布会现场"'
        )
    )
    result = run(validate, [campaign(tmp_path, manifest)])
    assert result.code == 2
    said = result.err
    assert "settings.concurency: unknown key 'concurency' (did you mean 'concurrency'?)" in said
    assert "videos.welcome.avatar: 'nobody' is not an avatar" in said
    assert "videos.welcome[c2].title: title has 21 characters, at most 20" in said
    assert said.rstrip().endswith(": 3 errors")


def test_a_backslash_in_a_path_is_said_to_be_no_folder_separator(tmp_path: Path) -> None:
    manifest = (
        BASE.replace("file: media/founder.mp4", "file: media\\founder.mp4")
        .replace("csv: customers.csv", "csv: .\\customers.csv")
        .replace("text_file: welcome.txt.j2", "text_file: .\\welcome.txt.j2")
    )
    result = run(validate, [campaign(tmp_path, manifest)])
    assert result.code == 2
    said = "(write paths with '/': a '\\' is no folder separator)"
    for path in ("assets.clip.file", "data.customers.csv"):
        assert f"{path}: file not found: " in result.err and said in result.err, result.err
    assert result.err.count(said) == 2  # the text_file is not reached without its rows
    manifest = BASE.replace("text_file: welcome.txt.j2", "text_file: .\\welcome.txt.j2")
    result = run(validate, [campaign(tmp_path / "t", manifest)])
    assert "text_file: template file not found: " in result.err and said in result.err


def test_every_fault_of_one_row_is_said(tmp_path: Path) -> None:
    """A title too long does not hide the same row's HTML tag or an output leaving
    output_dir."""
    manifest = BASE.replace(
        'title: "欢迎{{ row.name }}"',
        f'title: "欢迎{{{{ row.name }}}}{LONG}"\n    output: "../{{{{ key }}}}.mp4"',
    )
    path = campaign(tmp_path, manifest, template="<b>{{ row.name }}</b>\n")
    said = run(validate, [path]).err
    for fault in ("videos.welcome[c2].title: title has 21 characters",
                  "videos.welcome[c2].text_file: the text contains an HTML tag '<b>'",
                  "videos.welcome[c2].output: '../c2.mp4' leaves output_dir"):  # fmt: skip
        assert fault in said, said


def test_unknown_keys_hide_no_other_fault_of_their_item(tmp_path: Path) -> None:
    """An unknown key in an item, a data source, an asset or a voice is said, and so is
    every other fault of the same item: a dangling reference, a misspelt column, a title
    too long."""
    manifest = (
        BASE.replace("clip: {file: media/founder.mp4}", "clip: {file: media/founder.mp4, x: 1}")
        .replace('key: "{{ row.customer_id }}"', 'key: "{{ row.customer_id }}"\n    colour: 1')
        .replace("narrator: {public: 公共声音1}", "narrator: {public: 公共声音1, tone: 2}")
        .replace("avatar: founder", "avatar: nobody\n    colour: green")
        .replace('title: "欢迎{{ row.name }}"', f'title: "欢迎{{{{ row.name }}}}{LONG}"')
    )
    said = run(validate, [campaign(tmp_path, manifest, template="{{ row.nme }}\n")]).err
    for fault in (
        "assets.clip.x: unknown key 'x'",
        "data.customers.colour: unknown key 'colour'",
        "voices.narrator.tone: unknown key 'tone'",
        "videos.welcome.colour: unknown key 'colour'",
        "videos.welcome.avatar: 'nobody' is not an avatar",
        "videos.welcome[c2].title: title has 21 characters",
        "videos.welcome[c2].text_file: undefined in template: no column 'nme'",
    ):
        assert fault in said, said


def test_a_duplicate_key_or_refused_tag_hides_no_other_fault(tmp_path: Path) -> None:
    manifest = (
        BASE.replace("vars: {brand: 飞影}", "vars: {brand: 飞影, brand: X}")
        .replace("name: case\n", "name: case\nsettings: {concurency: 4}\n")
        .replace("avatar: founder", "avatar: nobody")
        .replace('title: "欢迎{{ row.name }}"', f'title: "欢迎{{{{ row.name }}}}{LONG}"')
        .replace("promo: {voice: narrator,", "promo: {voice: !!binary aGk=,")
    )
    said = run(validate, [campaign(tmp_path, manifest)]).err
    for fault in (
        "vars.brand: duplicate key 'brand'",
        "audios.promo.voice: tag !!binary is not allowed",
        "settings.concurency: unknown key",
        "videos.welcome.avatar: 'nobody' is not an avatar",
        "videos.welcome[c2].title: title has 21 characters",
    ):
        assert fault in said, said
    assert "audios.promo.voice: expected" not in said  # (the tag said it once)


def test_a_value_yaml_reads_as_another_type_says_to_quote_it(tmp_path: Path) -> None:
    manifest = BASE.replace('title: "欢迎{{ row.name }}"', "title: 10:30").replace(
        'text: "{{ vars.brand }}新品上市"', "text: 0123"
    )
    said = run(validate, [campaign(tmp_path, manifest)]).err
    assert (
        'videos.welcome.title: expected a string; YAML reads 10:30 as int 630: write "10:30"'
        in said
    )
    assert 'audios.promo.text: expected a string; YAML reads 0123 as int 83: write "0123"' in said


def test_a_244_row_campaign_plans_in_a_screenful(sandbox: Sandbox, tmp_path: Path) -> None:
    """Fresh, after a full run, after a template edit with rows removed: each plan is short,
    and --detailed-exitcode says whether there are changes."""
    campaign = Campaign(tmp_path / "c", rows=244, concurrency=10).write()
    manifest = str(campaign.manifest)
    parser, env = build_parser(), {"HIFLY_BASE_URL": sandbox.base_url}
    args = parser.parse_args(["plan", "--detailed-exitcode", manifest])  # (in-process: quicker)
    fresh = run(args.handler, args, env)
    lines = fresh.out.splitlines()
    assert fresh.code == 2 and len(lines) < 20, fresh.out + fresh.err
    assert lines[0] == f"plan for {manifest} against the HiFly API at {sandbox.base_url}"
    assert lines[5] == "  create    videos.welcome[c0001 … c0244]  video_by_tts    244 rows"
    assert lines[-2] == "Plan: 248 to create."
    assert lines[-1].startswith("Estimated cost: ~1,182 credits (244 video_by_tts ~1,182)")
    args = parser.parse_args(["plan", "--json", manifest])
    document = json.loads(run(args.handler, args, {}).out)
    actions = {item["id"]: item["action"] for item in document["items"]}
    assert len(actions) == 248 and set(actions.values()) == {"create"}
    assert actions["videos.welcome[c0244]"] == actions["avatars.founder"] == "create"
    assert document["changes"] is True and document["target"]["sandbox"] is False

    assert cli("run", "--no-progress", manifest, sandbox=sandbox).code == 0
    unchanged = cli("plan", "--detailed-exitcode", manifest, sandbox=sandbox)
    assert unchanged.code == 0, unchanged.stdout + unchanged.stderr
    said = unchanged.stdout.splitlines()
    assert said[1:] == ["", "No changes. 248 items are done and unchanged."]

    campaign.template = "新版：" + campaign.template
    campaign.rows = 240
    campaign.write()
    edited = cli("plan", "--detailed-exitcode", manifest, sandbox=sandbox)
    lines = edited.stdout.splitlines()
    assert edited.code == 2 and len(lines) < 20, edited.stdout + edited.stderr
    assert lines[1] == (
        "  recreate  videos.welcome[c0001 … c0240]  video_by_tts    240 rows  (text changed)"
    )
    removed = [f"  removed   videos.welcome[c02{n}]  (outputs kept)" for n in range(41, 45)]
    assert lines[2:6] == removed
    assert lines[-2] == "Plan: 240 to recreate, 4 unchanged, 4 removed (outputs kept)."
