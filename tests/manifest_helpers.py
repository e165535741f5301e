"""Helpers for the manifest tests: write small campaigns, run commands in-process."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO / "examples" / "quickstart" / "media"
INVALID = REPO / "tests" / "manifests" / "invalid"

BASE = """\
version: 1
name: case
vars: {brand: 飞影}
assets:
  clip: {file: media/founder.mp4}
  sample: {file: media/voice.wav}
data:
  customers:
    csv: customers.csv
    key: "{{ row.customer_id }}"
avatars:
  founder: {video: clip}
voices:
  narrator: {public: 公共声音1}
  cloned: {audio: sample, rate: 1.1}
videos:
  welcome:
    for_each: customers
    avatar: founder
    voice: cloned
    text_file: welcome.txt.j2
    title: "欢迎{{ row.name }}"
audios:
  promo: {voice: narrator, text: "{{ vars.brand }}新品上市", title: 推广}
"""

CSV = "customer_id,name,city\nc1,张伟,上海\nc2,Alice,London\nc3,李娜,成都\n"
TEMPLATE = "{{ row.name }}您好，欢迎来到{{ vars.brand }}。\n"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(func: Callable[..., int], *args: object, **kwargs: object) -> Result:
    """Run a command function, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = func(*args, **kwargs)
    return Result(code, out.getvalue(), err.getvalue())


def campaign(
    folder: Path,
    manifest: str = BASE,
    *,
    csv: str = CSV,
    template: str = TEMPLATE,
    replace: dict[str, str] | None = None,
) -> Path:
    """Write a campaign (manifest, data, template, media) into ``folder``; return the manifest."""
    (folder / "media").mkdir(parents=True, exist_ok=True)
    for name in ("founder.mp4", "voice.wav"):
        target = folder / "media" / name
        if not target.exists():
            shutil.copy(MEDIA / name, target)
    for old, new in (replace or {}).items():
        assert old in manifest, old
        manifest = manifest.replace(old, new)
    (folder / "customers.csv").write_text(csv, encoding="utf-8")
    (folder / "welcome.txt.j2").write_text(template, encoding="utf-8")
    path = folder / "campaign.yaml"
    path.write_text(manifest, encoding="utf-8")
    return path
