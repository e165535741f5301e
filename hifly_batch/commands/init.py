"""``hifly-batch init DIR``: scaffold a campaign that validates and rehearses as created."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from hifly_batch import console
from hifly_batch.errors import UsageError

MANIFEST = "campaign.yaml"
# A copy of the package's schema, so editors complete and check the manifest offline.
SCHEMA = "manifest.schema.json"
DEFAULT_NAME = "campaign"
# SPEC §3: the manifest name is one safe path segment.
_UNSAFE = re.compile(r"[^\w.\-]")

MANIFEST_TEXT = """\
# yaml-language-server: $schema={schema}
# A personalised welcome video for every customer in data/customers.csv.
#   Check it:          hifly-batch validate {manifest}
#   Rehearse it:       hifly-batch run --sandbox {manifest}   (no token, no credits)
#   Make it for real:  export HIFLY_TOKEN=... && hifly-batch run {manifest}
# Replace media/presenter.mp4 and media/voice.wav with your own footage and
# recording (5 s to 3 min of clear speech) before the real run.
version: 1
name: {name}

settings:
  poll_interval: 5s     # first look at a new task after this long (the service's pace)
  poll_max: 60s         # never wait longer than this between two looks
  concurrency: 4        # tasks generating at once

vars:
  brand: My Brand

assets:
  presenter_clip: {{file: media/presenter.mp4}}
  voice_sample: {{file: media/voice.wav}}

data:
  customers:
    csv: data/customers.csv
    key: "{{{{ row.customer_id }}}}"

avatars:
  presenter: {{video: presenter_clip, title: Presenter}}

voices:
  presenter_voice: {{audio: voice_sample, title: Presenter voice}}

videos:
  welcome:
    for_each: customers
    when: "{{{{ row.opt_in }}}}"
    avatar: presenter
    voice: presenter_voice
    text_file: templates/welcome.txt.j2
    title: "Welcome {{{{ row.name }}}}"
    output: "welcome/{{{{ key }}}}.mp4"
"""

CUSTOMERS = """\
customer_id,name,city,opt_in
c001,Alice,London,yes
c002,张伟,上海,yes
c003,Bob,Berlin,no
"""

TEMPLATE = """\
Hello {{ row.name }}! Thank you for choosing {{ vars.brand }} in {{ row.city }}.
This video was made just for you.
"""

GITIGNORE = """\
# hifly-batch: this machine's run state (keep it to resume) and the outputs. Commit
# campaign.lock: it is the record of what was made, so no one pays for it again.
.hifly/
out/
# A sandbox's world lives on one machine; its record is not for others.
*.sandbox.lock
# What a run killed while writing a lock file left (the next run removes it).
.*.lock.*.tmp
"""

# Two branches that each ran add different lines to the lock file: git keeps both
# sides' lines instead of a conflict, and hifly-batch reads several lines for one
# item by one rule (SPEC §5).
GITATTRIBUTES = """\
*.lock merge=union
"""

# Every file of the scaffold, in the order it is listed, with what it is for.
WRITTEN = {
    MANIFEST: "the manifest: what to make",
    SCHEMA: "its JSON Schema, for editors",
    "data/customers.csv": "one video per row",
    "templates/welcome.txt.j2": "the script, with {{ row.name }} and other blanks",
    "media/presenter.mp4": "placeholder footage to clone the presenter from",
    "media/voice.wav": "placeholder recording to clone the voice from",
    ".gitignore": "keeps the state (.hifly/) and outputs (out/) out of git",
    ".gitattributes": f"lets git merge {MANIFEST.removesuffix('.yaml')}.lock",
}
NEXT = {
    f"hifly-batch validate {MANIFEST}": "check it, offline",
    f"hifly-batch run --sandbox {MANIFEST}": "rehearse it: no token, no credits",
    f"hifly-batch status --sandbox {MANIFEST}": "what the rehearsal made",
}


def register(
    subparsers: argparse._SubParsersAction, common: Callable[..., list[argparse.ArgumentParser]]
) -> None:
    parser = subparsers.add_parser(
        "init",
        parents=common(),
        help="scaffold a new campaign folder",
        description=(
            "Create a campaign in DIR (new or empty): campaign.yaml, data/customers.csv,\n"
            "templates/welcome.txt.j2, small placeholder media, the manifest's JSON Schema\n"
            "for editors, a .gitignore for the state folder (.hifly/) and outputs (out/),\n"
            "and a .gitattributes that lets git merge campaign.lock without conflicts.\n"
            "It validates and rehearses on the sandbox as created."
        ),
        epilog=(
            "example:\n  hifly-batch init spring-welcome\n"
            "  cd spring-welcome && hifly-batch run --sandbox campaign.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder to create (or empty)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return init(args.dir)


def init(directory: Path) -> int:
    """Write the scaffold into ``directory``; UsageError when it exists and is not empty."""
    _check_empty(directory)
    for relative, content in scaffold(campaign_name(directory)).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    console.out(summary(directory, cd=directory.resolve() != Path.cwd().resolve()))
    return 0


def summary(directory: Path, *, cd: bool = True) -> str:
    """What ``init`` wrote (one file a line, relative to ``directory``) and the commands
    to try next (``cd``: starting with going there)."""
    width = max(len(name) for name in WRITTEN)
    files = [f"  {name:<{width}}  {what}" for name, what in WRITTEN.items()]
    go = [f"  cd {shlex.quote(str(directory))}"] if cd else []
    steps = [f"  {command:<{max(map(len, NEXT))}}  # {why}" for command, why in NEXT.items()]
    return "\n".join([f"created {directory}/ with:", *files, "next:", *go, *steps])


def _check_empty(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"init: {directory} is a file; give a new or empty folder")
    if directory.is_dir() and any(directory.iterdir()):
        raise UsageError(
            f"init: {directory} is not empty; nothing was written. "
            "Give a new or empty folder, e.g. hifly-batch init my-campaign"
        )


def campaign_name(directory: Path) -> str:
    """The folder's name made a valid manifest name; ``campaign`` when nothing is left."""
    name = _UNSAFE.sub("-", directory.resolve().name).lstrip(".")[:64]
    return name or DEFAULT_NAME


def scaffold(name: str) -> dict[str, str | bytes]:
    """Every file of a new campaign, by path relative to its folder."""
    # Imported here: the sandbox package is large, and every command's parser loads this.
    from hifly_batch.sandbox.media_maker import make_mp4, make_wav

    files: dict[str, str | bytes] = {
        MANIFEST: MANIFEST_TEXT.format(name=name, manifest=MANIFEST, schema=SCHEMA),
        SCHEMA: resources.files("hifly_batch").joinpath("schemas", SCHEMA).read_bytes(),
        "data/customers.csv": CUSTOMERS,
        "templates/welcome.txt.j2": TEMPLATE,
        "media/presenter.mp4": make_mp4(6.0, f"{name}:presenter"),
        "media/voice.wav": make_wav(8.0, f"{name}:voice"),
        ".gitignore": GITIGNORE,
        ".gitattributes": GITATTRIBUTES,
    }
    return {path: files[path] for path in WRITTEN}  # in the order init lists them
