"""What is written is what is spoken (SPEC §3, v1.1), end to end: the texts the sandbox
received in its create requests are checked word for word.

The scalars of ``vars`` and of inline ``data.*.rows`` reach templates as the text
written in the manifest, at any depth, as CSV cells do: YAML 1.1's implicit booleans,
octals, sexagesimals, floats, nulls and dates never apply there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.core.graph import build_graph
from hifly_batch.manifest.loader import load_campaign
from hifly_batch.manifest.templates import (
    TemplateFault,
    base_context,
    compile_template,
    without_nulls,
)
from hifly_batch.sandbox import Sandbox
from tests.campaigns import cli
from tests.manifest_helpers import MEDIA, campaign

# Each spelling YAML 1.1 would turn into another value, as written in the manifest.
SPELLINGS = ["00123", "0123", "NO", "yes", "off", "~", "null", "10:30", "9.90", "12.50",
             "1e3", "+8613800138000", "2024-05-01", "0x1F", ".inf", "TRUE"]  # fmt: skip


# Five places a spelling is spoken from: a row, vars, vars nested in a mapping, in a list,
# and a row's nested value.
TEXT = (
    "[{{ row.said }}|{{ vars.plain }}|{{ vars.nested.deeper[0] }}"
    "|{{ vars.nested.deeper[1].inner }}|{{ row.more.list[0] }}]"
)


def manifest(spelling: str) -> str:
    """A campaign speaking ``spelling`` from a row, from vars, and from nested vars."""
    return f"""\
version: 1
name: spoken
vars:
  plain: {spelling}
  nested: {{deeper: [{spelling}, {{inner: {spelling}}}]}}
data:
  people:
    key: "k{{{{ row.id }}}}"
    rows:
      - {{id: {spelling}, said: {spelling}, opt_in: yes, more: {{list: [{spelling}]}}}}
assets:
  clip: {{file: media/founder.mp4}}
avatars:
  founder: {{video: clip}}
voices:
  narrator: {{public: 公共声音1}}
videos:
  hello:
    for_each: people
    when: "{{{{ row.opt_in == 'yes' }}}}"
    avatar: founder
    voice: narrator
    title: "t{{{{ row.id }}}}"
    text: "{TEXT}"
"""


def write(folder: Path, spelling: str) -> Path:
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "founder.mp4").write_bytes((MEDIA / "founder.mp4").read_bytes())
    path = folder / "spoken.yaml"
    path.write_text(manifest(spelling), encoding="utf-8")
    return path


@pytest.mark.parametrize("spelling", SPELLINGS, ids=lambda s: repr(s))
def test_every_scalar_in_vars_and_rows_is_spoken_as_written(tmp_path: Path, spelling: str) -> None:
    path = write(tmp_path, spelling)
    (work,) = load_campaign(path).works  # the `when` kept the row: 'yes' is 'yes'
    assert work.text == f"[{spelling}|{spelling}|{spelling}|{spelling}|{spelling}]"
    assert work.key == f"k{spelling}"
    assert work.output.endswith(f"/k{spelling}.mp4")


def test_a_sandbox_run_sends_the_texts_as_written(sandbox: Sandbox, tmp_path: Path) -> None:
    spelling = "00123"
    path = write(tmp_path, spelling)
    assert cli("validate", str(path)).code == 0
    plan = cli("plan", str(path), sandbox=sandbox)
    assert plan.code == 0 and f"videos.hello[k{spelling}]" in plan.stdout, plan.stdout
    result = cli("run", "--no-progress", str(path), sandbox=sandbox)
    assert result.code == 0, result.stderr
    tasks = [sandbox.task(t.task_id) for t in sandbox.task_times()]
    (task,) = [t for t in tasks if t is not None and t.endpoint.startswith("video/")]
    assert task.params["text"] == "[00123|00123|00123|00123|00123]"
    assert task.title == "t00123"
    assert (tmp_path / "out" / "spoken.sandbox" / "videos" / "hello" / "k00123.mp4").is_file()


def test_an_empty_value_is_the_empty_text(tmp_path: Path) -> None:
    path = write(tmp_path, "x")
    path.write_text(manifest("x").replace("  plain: x\n", "  plain:\n"), encoding="utf-8")
    (work,) = load_campaign(path).works
    assert work.text == "[x||x|x|x]"


NULLS = """\
version: 1
name: nulls
data:
  people: {jsonl: people.jsonl, key: "{{ row.id }}"}
voices:
  v: {public: 公共声音1}
audios:
  hi:
    for_each: people
    voice: v
    title: "{{ row.profile.nick }}"
    text: "{{ row.nickname }}，您好"
  chosen:
    for_each: people
    voice: v
    text: "{{ row.nickname or '' }}您好{{ row.profile.nick | default('', true) }}"
"""


def test_a_null_rendered_into_any_field_is_an_error_at_the_field_and_row(tmp_path: Path) -> None:
    (tmp_path / "people.jsonl").write_text(
        '{"id": "c1", "nickname": null, "profile": {"nick": null}}\n'
        '{"id": "c2", "nickname": "李娜", "profile": {"nick": "娜娜"}}\n',
        encoding="utf-8",
    )
    path = tmp_path / "nulls.yaml"
    path.write_text(NULLS, encoding="utf-8")
    result = cli("validate", str(path))
    assert result.code == 2
    said = result.stderr.splitlines()
    row = f"(row 'c1' at {tmp_path / 'people.jsonl'}:1)"
    assert f"{path}:11:12: audios.hi[c1].title: a value rendered here is null" in said[0]
    assert f"{path}:12:11: audios.hi[c1].text: a value rendered here is null" in said[1]
    assert all(row in line for line in said[:2]), said
    assert said[2].endswith("2 errors")
    # Chosen on purpose, the empty text is fine: nothing is said of `chosen` or of c2.
    assert "chosen" not in result.stderr and "c2" not in result.stderr


NORMALIZED = """\
version: 1
name: normalized
data:
  people:
    key: "{{ row.id }}"
    rows:
      - {id: c1, name: 李娜, vip: "yes"}
      - {id: c2, name: "Zoe\u0301", vip: "no"}
voices:
  v: {public: 公共声音1}
audios:
  hi:
    for_each: people
    voice: v
    title: >
      欢迎{{ row.name }}
    text_file: hi.txt.j2
"""
HI = """\
  {{ row.name }}，您好。
{% if row.vip == 'yes' %}  \t
  感谢您一直以来的支持。
{% endif %}\t
欢迎再来。

"""  # (blanks after a tag, unseen in an editor, still leave no blank line)


def test_rendered_fields_are_nfc_stripped_and_block_tags_leave_no_blank_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "hi.txt.j2").write_text(HI, encoding="utf-8")
    path = tmp_path / "normalized.yaml"
    path.write_text(NORMALIZED, encoding="utf-8")
    first, second = load_campaign(path).works
    assert first.title == "欢迎李娜"  # a folded block's line break is not sent
    assert first.text == "李娜，您好。\n  感谢您一直以来的支持。\n欢迎再来。"
    assert second.text == "Zoé，您好。\n欢迎再来。" and second.title == "欢迎Zoé"
    assert second.text is not None and "\u0301" not in second.text  # NFC: one é


@pytest.mark.parametrize("blank", ["\u200b", " \u2060\ufeff ", "\u200b\n\u200c"])
def test_a_text_of_whitespace_and_invisible_characters_is_empty(tmp_path: Path, blank: str) -> None:
    (tmp_path / "hi.txt.j2").write_text(blank, encoding="utf-8")
    path = tmp_path / "normalized.yaml"
    title = blank.replace("\n", "")  # a title of nothing but these is no title
    path.write_text(NORMALIZED.replace("欢迎{{ row.name }}", title), encoding="utf-8")
    result = cli("validate", str(path))
    assert result.code == 2
    assert "audios.hi[c1].text_file: the text is empty" in result.stderr, result.stderr
    assert "title" not in result.stderr


def test_work_made_before_texts_were_normalized_is_still_this_item(tmp_path: Path) -> None:
    """Version 1.0 sent the text as rendered (the template's last line break, a blank
    line a block tag left): the fingerprint it had is known, so that work is not made
    again for a difference nobody hears (the state test runs a real 1.0 state)."""
    (tmp_path / "hi.txt.j2").write_text(HI, encoding="utf-8")
    path = tmp_path / "normalized.yaml"
    path.write_text(NORMALIZED, encoding="utf-8")
    campaign = load_campaign(path)
    first = campaign.works[0]
    legacy = "  李娜，您好。\n  \t\n  感谢您一直以来的支持。\n\t\n欢迎再来。\n\n"
    assert first.legacy["text"] == legacy
    assert first.legacy["title"] == "欢迎李娜\n"
    from hifly_batch.core.graph import build_graph

    items = {i.id: i for i in build_graph(campaign)}
    hi = items["audios.hi[c1]"]
    assert hi.legacy_fingerprint and hi.legacy_fingerprint != hi.fingerprint


@pytest.mark.parametrize(
    ("second", "shown"),
    [("c001\u200b", "'c001\\u200b'"), ("c001\u2060", "'c001\\u2060'"),
     ("Zoe\u0301", "'Zoé'")],
    ids=["zero-width space", "word joiner", "NFD"],
)  # fmt: skip
def test_keys_that_look_the_same_are_duplicates_naming_both_rows(
    tmp_path: Path, second: str, shown: str
) -> None:
    first = "Zoé" if second.startswith("Zoe") else "c001"
    csv = f"customer_id,name,city\n{first},张伟,上海\n{second},李娜,成都\n"
    path = campaign(tmp_path, csv=csv)
    result = cli("validate", str(path))
    assert result.code == 2
    assert f"data.customers.key: duplicate key {shown}: row 2 at " in result.stderr, result.stderr
    assert "and row 1 at line 2" in result.stderr


@pytest.mark.parametrize(
    ("key", "said"),
    [("c\x00001", "holds an invisible character U+0000"),
     ("c\u200b001", "holds an invisible character U+200B (ZERO WIDTH SPACE) at position 2"),
     ("c" * 300, "is 304 bytes in UTF-8; file systems take at most 255"),
     ("c\u2028001", "U+2028 (LINE SEPARATOR)"), ("c\u3164", "U+3164 (HANGUL FILLER)")],
    ids=["NUL", "zero-width space inside", "300 characters", "line separator", "filler"],
)  # fmt: skip
def test_a_key_no_file_can_carry_is_refused_by_validate(
    tmp_path: Path, key: str, said: str
) -> None:
    """Before, such a key passed validate, was paid for, then failed on every run."""
    path = campaign(tmp_path, csv=f"customer_id,name,city\n{key},张伟,上海\n")
    result = cli("validate", str(path))
    assert result.code == 2 and said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_column_or_var_named_like_a_dict_method_is_its_value(tmp_path: Path) -> None:
    """`row.items` is the column "items": never dict.items, whose address would make a
    new key (and a new paid video) on every run."""
    csv = "customer_id,items,name\nc1,A1,张伟\n"
    path = campaign(tmp_path, csv=csv, template="{{ row.items }}您好。\n",
                    replace={"vars: {brand: 飞影}": "vars: {brand: 飞影, keys: K}",
                             '"{{ row.customer_id }}"': '"{{ row.items }}"'})  # fmt: skip
    (work, *_) = load_campaign(path).works
    assert work.key == "A1"
    (tmp_path / "welcome.txt.j2").write_text("{{ row.items }}|{{ vars.keys }}", encoding="utf-8")
    (work, *_) = load_campaign(path).works
    assert work.text == "A1|K"


@pytest.mark.parametrize(
    ("line", "said"),
    [('{"id": "c1", "n": ' + "9" * 5000 + "}", "invalid JSON: Exceeds the limit"),
     ('{"id": "c1", "n": 1e999}', "1e999 is not JSON")],
    ids=["5000 digits", "1e999"],
)  # fmt: skip
def test_a_json_number_no_row_can_hold_is_a_located_error(
    tmp_path: Path, line: str, said: str
) -> None:
    (tmp_path / "people.jsonl").write_text(line + "\n", encoding="utf-8")
    path = tmp_path / "nulls.yaml"
    path.write_text(NULLS, encoding="utf-8")
    result = cli("validate", str(path))
    assert result.code == 2 and "people.jsonl:1:" in result.stderr and said in result.stderr
    assert "internal error" not in result.stderr


def test_a_nul_in_a_text_file_path_or_the_output_folder_is_refused_by_validate(
    tmp_path: Path,
) -> None:
    path = campaign(tmp_path, replace={"text_file: welcome.txt.j2": 'text_file: "a\\0b.j2"'})
    result = cli("validate", str(path))
    assert result.code == 2 and "text_file: the path holds an invisible character U+0000" in (
        result.stderr
    ), result.stderr
    path = campaign(
        tmp_path / "o",
        replace={"name: case\n": 'name: case\nsettings: {output_dir: "o\\0ut\\a"}\n'},
    )
    result = cli("validate", str(path))
    assert (
        result.code == 2 and "settings.output_dir: the folder holds an invisible" in result.stderr
    )


def test_an_output_name_of_255_bytes_is_downloaded_not_only_validated(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The download's temporary file has a short name of its own: a 255-byte name that
    validate passes is written after the video is paid for, never refused then."""
    long = "{{ key }}{{ 'x' * 249 }}.mp4"  # c1 + 249 + .mp4 = 255 bytes
    fields = f'title: "欢迎"\n    output: "{long}"'
    path = campaign(tmp_path, csv="customer_id,name,city\nc1,张伟,上海\n",
                    replace={'title: "欢迎{{ row.name }}"': fields})  # fmt: skip
    assert cli("validate", str(path)).code == 0
    result = cli("run", "--no-progress", str(path), sandbox=sandbox)
    assert result.code == 0, result.stdout + result.stderr
    name = "c1" + "x" * 249 + ".mp4"
    assert (
        len(name.encode()) == 255 and (tmp_path / "out" / "case.sandbox" / name).stat().st_size > 0
    )


@pytest.mark.parametrize(
    "source",
    ["{{ row.n ~ '' }}", "{{ row.n | string }}", "{{ '%s' % row.n }}", "{{ '{}'.format(row.n) }}",
     "{{ row.n | lower }}", "{{ row.lst }}", "{{ row.lst | join(',') }}", "{{ row.obj }}"],
)  # fmt: skip
def test_a_null_made_text_in_any_way_is_still_an_error(source: str) -> None:
    row = without_nulls({"n": None, "lst": [1, None], "obj": {"a": None}})
    with pytest.raises(TemplateFault, match="a value rendered here is null"):
        compile_template(source, "t.j2").render(base_context(row=row))


def test_a_null_chosen_on_purpose_is_the_empty_text_and_is_none() -> None:
    row = without_nulls({"n": None, "obj": {"a": None}})
    source = "[{{ row.n or '' }}|{{ row.n | default('', true) }}|{{ row.obj.a is none }}]"
    assert compile_template(source, "t.j2").render(base_context(row=row)) == "[||True]"


@pytest.mark.parametrize("control", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_a_control_character_in_a_spoken_field_is_refused_from_every_source(
    tmp_path: Path, control: str
) -> None:
    """NUL, BEL, ESC, DEL or NEL in a CSV cell or a var (a YAML escape) cannot be
    spoken: the text or title holding it is a located error, not a paid video."""
    csv = f"customer_id,name,city\nc1,张{control}伟,上海\nc2,Alice,Lon{control}don\n"
    path = campaign(
        tmp_path,
        csv=csv,
        template="{{ row.name }}您好，{{ row.city }}。\n",
        replace={"vars: {brand: 飞影}": f'vars: {{brand: "飞\\x{ord(control):02x}影"}}'},
    )
    result = cli("validate", str(path))
    assert result.code == 2, result.stderr
    code = f"U+{ord(control):04X}"
    for fault in (
        f"videos.welcome[c1].title: the title holds a control character {code} at position 4",
        f"videos.welcome[c1].text_file: the text holds a control character {code}",
        f"videos.welcome[c2].text_file: the text holds a control character {code}",
        f"audios.promo.text: the text holds a control character {code}",
    ):
        assert fault in result.stderr, result.stderr
    assert "c3" not in result.stderr


def test_tabs_and_line_breaks_in_a_text_are_spoken(tmp_path: Path) -> None:
    path = campaign(tmp_path, template="{{ row.name }}\t您好，\r\n欢迎。\n")
    assert cli("validate", str(path)).code == 0


def test_random_picks_the_same_for_a_row_on_every_run_and_lipsum_is_refused(
    tmp_path: Path,
) -> None:
    """A pick that changed would change the text, and each run would pay again."""
    template = "{{ ['您好', '你好', '欢迎', '早上好', '晚上好'] | random }}，{{ row.name }}\n"
    texts = set()
    for attempt in range(3):
        path = campaign(tmp_path / str(attempt), template=template)
        texts.add(tuple(w.text for w in load_campaign(path).works if w.row))
    assert len(texts) == 1, texts
    ((c1, c2, c3),) = texts
    assert c1 is not None and c1.endswith("，张伟")
    picks = {text.split("，")[0] for text in (c1, c2, c3) if text}
    assert picks <= {"您好", "你好", "欢迎", "早上好", "晚上好"}
    path = campaign(tmp_path / "l", template="{{ lipsum(1) }}\n")
    result = cli("validate", str(path))
    assert result.code == 2 and "lipsum makes a different text on every run" in result.stderr


def test_a_text_file_chosen_by_a_value_stays_in_the_manifest_folder(tmp_path: Path) -> None:
    """Written in the manifest, a text_file may lead anywhere (as an asset's file may);
    chosen by a row's value, it is one of the campaign's own files."""
    outside = tmp_path / "secret.txt"
    outside.write_text("not for speaking\n", encoding="utf-8")
    csv = "customer_id,name,city\nc1,张伟,../secret.txt\nc2,Alice,welcome.txt.j2\n"
    path = campaign(
        tmp_path / "c",
        csv=csv,
        replace={"text_file: welcome.txt.j2": 'text_file: "{{ row.city }}"'},
    )
    result = cli("validate", str(path))
    assert result.code == 2
    said = "videos.welcome[c1].text_file: '../secret.txt' leads outside the manifest's folder"
    assert said in result.stderr, result.stderr
    assert "[c2]" not in result.stderr and "not for speaking" not in result.stderr
    path = campaign(
        tmp_path / "w", replace={"text_file: welcome.txt.j2": "text_file: ../secret.txt"}
    )
    assert next(w.text for w in load_campaign(path).works if w.row) == "not for speaking"


def test_a_lone_surrogate_is_a_located_error_never_an_internal_one(tmp_path: Path) -> None:
    """From a template's own escape (YAML refuses one in the manifest; JSON Lines
    refuse one at its line)."""
    path = campaign(tmp_path, template='hello {{ "\\udc80" }}\n')
    result = cli("validate", str(path))
    assert result.code == 2 and "internal error" not in result.stderr, result.stderr
    assert "videos.welcome[c1].text_file: the text holds a lone surrogate U+DC80" in result.stderr


@pytest.mark.parametrize("opt_in", ["\u200b", "no\u200b", "\ufeffFalse", " 0\u2060 "])
def test_a_when_that_looks_false_is_false(tmp_path: Path, opt_in: str) -> None:
    path = campaign(
        tmp_path,
        csv=f"customer_id,name,city,opt_in\nc1,张伟,上海,{opt_in}\nc2,李娜,成都,yes\n",
        replace={
            "    for_each: customers\n": '    for_each: customers\n    when: "{{ row.opt_in }}"\n'
        },
    )
    keys = [work.key for work in load_campaign(path).works if work.name == "welcome"]
    assert keys == ["c2"]


@pytest.mark.parametrize("mark", ["\ufe0f", "\u17b4", "\u180b", "\U000e0101"])
def test_a_key_holding_a_mark_that_shows_nothing_is_refused(tmp_path: Path, mark: str) -> None:
    """Variation selectors and the like: alone they are refused, beside the plain key
    they are its duplicate."""
    path = campaign(tmp_path, csv=f"customer_id,name,city\nc1{mark},张伟,上海\n")
    result = cli("validate", str(path))
    assert result.code == 2
    assert f"holds an invisible character U+{ord(mark):04X}" in result.stderr, result.stderr
    path = campaign(
        tmp_path / "2", csv=f"customer_id,name,city\nc1,张伟,上海\nc1{mark},李娜,成都\n"
    )
    assert "duplicate key" in cli("validate", str(path)).stderr


CLONES = """\
version: 1
name: titles
assets:
  clip: {file: media/founder.mp4}
  sample: {file: media/voice.wav}
avatars:
"""


def test_clone_titles_of_nothing_are_left_out_and_control_characters_refused(
    tmp_path: Path,
) -> None:
    manifest = (
        CLONES
        + """\
  blank: {video: clip, title: "\\u200b\\u2060 "}
  bell: {video: clip, title: "主\\a播"}
voices:
  filler: {audio: sample, title: "\\u3164"}
  escape: {audio: sample, title: "x\\e[31m"}
audios:
  a: {voice: filler, text: 你好}
videos:
  v: {avatar: blank, voice: escape, text: 你好}
"""
    )
    path = campaign(tmp_path, manifest)
    result = cli("validate", str(path))
    assert result.code == 2
    assert "avatars.bell.title: the title holds a control character U+0007" in result.stderr
    assert "voices.escape.title: the title holds a control character U+001B" in result.stderr
    assert "blank" not in result.stderr and "filler" not in result.stderr
    plain = manifest.replace('bell: {video: clip, title: "主\\a播"}', "bell: {video: clip}")
    plain = plain.replace('escape: {audio: sample, title: "x\\e[31m"}', "escape: {audio: sample}")
    path = campaign(tmp_path / "ok", plain)
    manifest_model = load_campaign(path).manifest
    assert manifest_model.avatars["blank"].title is None
    assert manifest_model.voices["filler"].title == "filler"  # its name, as when none is given


def test_a_key_template_includes_a_file_of_the_manifest_folder(tmp_path: Path) -> None:
    path = campaign(
        tmp_path, replace={'key: "{{ row.customer_id }}"': "key: \"{% include 'k.j2' %}\""}
    )
    (tmp_path / "k.j2").write_text("k-{{ row.customer_id }}", encoding="utf-8")
    assert [w.key for w in load_campaign(path).works if w.key] == ["k-c1", "k-c2", "k-c3"]


@pytest.mark.parametrize(
    "title", ['{{ "\\udc80" }}', '{{ "\\u200b\\udc80" }}', '{{ "%c" % 56448 }}']
)
def test_a_title_of_invisible_characters_and_a_lone_surrogate_is_a_located_error(
    tmp_path: Path, title: str
) -> None:
    path = campaign(tmp_path, replace={'title: "欢迎{{ row.name }}"': f"title: '{title}'"})
    result = cli("validate", str(path))
    assert result.code == 2 and "internal error" not in result.stderr, result.stderr
    assert "videos.welcome[c1].title: the title holds a lone surrogate U+DC80" in result.stderr


@pytest.mark.parametrize("mark", ["\u2065", "\ufff0", "\U000e0080", "\ue000", "\U00016fe4"])
def test_unassigned_private_and_filler_code_points_are_invisible_too(
    tmp_path: Path, mark: str
) -> None:
    path = campaign(tmp_path, csv=f"customer_id,name,city\nc1{mark},张伟,上海\n")
    result = cli("validate", str(path))
    assert f"holds an invisible character U+{ord(mark):04X}" in result.stderr, result.stderr
    when = {"    avatar: founder\n": '    avatar: founder\n    when: "{{ row.city }}"\n'}
    path = campaign(tmp_path / "w", csv=f"customer_id,name,city\nc1,张伟,no{mark}\n", replace=when)
    assert [w.key for w in load_campaign(path).works if w.row] == []


# The fingerprints version 1.0 gave this campaign's items (its titles sent as written).
VERSION_1_0 = {
    "avatars.host": "efc647b39b5cb651dd893322c3e11618f929e6829e6d40e0619b66aa4fcaf1ea",
    "voices.mine": "cdeac8b45bbbbcac8afa1c8c8e143fa4fbddc1fb379536a581bb460086ccecdd",
    "videos.v": "4eb06f07c82eab2fb9ab1cd5ded1f3615f51c3030f4baf495039bbe20bde28b6",
}


def test_clone_titles_are_sent_normalized_and_their_clones_are_not_made_again(
    tmp_path: Path,
) -> None:
    """NFC and stripped, as a rendered title; the 1.0 fingerprint (the title as written)
    still names the avatar and the voice, and the works that use them."""
    manifest = (
        CLONES
        + """\
  host: {video: clip, title: " 主播 "}
voices:
  mine: {audio: sample, title: "\\tZoe\\u0301 "}
videos:
  v: {avatar: host, voice: mine, text: 你好}
"""
    )
    loaded = load_campaign(campaign(tmp_path, manifest))
    assert loaded.manifest.avatars["host"].title == "主播"
    assert loaded.manifest.voices["mine"].title == "Zoé"
    items = {item.id: item for item in build_graph(loaded).items}
    plain = manifest.replace('" 主播 "', "主播").replace('"\\tZoe\\u0301 "', "Zoé")
    before = {
        item.id: item for item in build_graph(load_campaign(campaign(tmp_path / "p", plain))).items
    }
    for item_id, fingerprint in VERSION_1_0.items():
        assert items[item_id].fingerprint == before[item_id].fingerprint  # what is sent
        assert items[item_id].legacy_fingerprint == fingerprint
    assert items["avatars.host"].request["title"] == "主播"


def test_a_when_far_too_long_or_holding_half_a_character_is_an_error(tmp_path: Path) -> None:
    def when(template: str) -> dict[str, str]:
        return {"    avatar: founder\n": f"    avatar: founder\n    when: '{template}'\n"}

    long = when('{{ row.city ~ ("x" * 999000) }}')
    result = cli("validate", str(campaign(tmp_path, replace=long)))
    said = "videos.welcome[c1].when: the when has 999,002 characters, at most 4,096"
    assert said in result.stderr
    half = when('{{ "\\udc80" }}')
    result = cli("validate", str(campaign(tmp_path / "h", replace=half)))
    assert "videos.welcome[c1].when: when holds a lone surrogate U+DC80" in result.stderr


def test_a_clone_title_is_counted_once_normalized(tmp_path: Path) -> None:
    decomposed = "e\\u0301" * 12  # 24 code points, 12 characters
    manifest = CLONES + f'  host: {{video: clip, title: "{decomposed}"}}\n'
    manifest += f'voices:\n  mine: {{audio: sample, title: "{decomposed}x" }}\n'
    manifest += "videos:\n  v: {avatar: host, voice: mine, text: 你好}\n"
    loaded = load_campaign(campaign(tmp_path, manifest))
    assert loaded.manifest.avatars["host"].title == "é" * 12
    long = manifest.replace(f'"{decomposed}x"', '"' + "声" * 21 + '"')
    result = cli("validate", str(campaign(tmp_path / "l", long)))
    assert "voices.mine.title: at most 20 characters, got 21" in result.stderr


@pytest.mark.parametrize("letter", ["\U00031350", "\u0cf3", "\U00011f00", "\U0001e4d0"])
def test_a_key_in_a_newer_unicodes_letters_is_a_key(tmp_path: Path, letter: str) -> None:
    """Letters Python's Unicode data does not know yet are not taken for invisible ones."""
    path = campaign(tmp_path, csv=f"customer_id,name,city\nc{letter},张伟,上海\n")
    assert [w.key for w in load_campaign(path).works if w.row] == [f"c{letter}"]


@pytest.mark.parametrize("mark", ["\ufdd5", "\U0001fffe", "\U000e0002"])
def test_noncharacters_and_ignorable_reserves_are_invisible(tmp_path: Path, mark: str) -> None:
    path = campaign(tmp_path, csv=f"customer_id,name,city\nc1{mark},张伟,上海\n")
    assert f"holds an invisible character U+{ord(mark):04X}" in cli("validate", str(path)).stderr
