"""What is written is what is spoken (SPEC §3, v1.1), end to end: the texts the sandbox
received in its create requests are checked word for word.

The scalars of ``vars`` and of inline ``data.*.rows`` reach templates as the text
written in the manifest, at any depth, as CSV cells do: YAML 1.1's implicit booleans,
octals, sexagesimals, floats, nulls and dates never apply there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hifly_batch.manifest.loader import load_campaign
from hifly_batch.sandbox import Sandbox
from tests.campaigns import cli
from tests.manifest_helpers import MEDIA

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
    assert (tmp_path / "out" / "spoken" / "videos" / "hello" / "k00123.mp4").is_file()


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
