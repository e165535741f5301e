"""Reading the README: its sections, code blocks and set-up commands, for the docs tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def headings(text: str) -> list[tuple[int, int, int, str]]:
    """(level, start, end of line, title) of every heading outside fenced code blocks."""
    found = []
    fenced = False
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#{1,6}) (.+)\n?$", line)
        if match:
            found.append((len(match.group(1)), offset, offset + len(line), match.group(2)))
        offset += len(line)
    return found


def section(text: str, title: str, level: int = 2) -> str:
    """The body under heading ``title`` (exact) up to the next heading of its level or above."""
    marks = "#" * level
    all_headings = headings(text)
    for n, (lvl, _, body_start, name) in enumerate(all_headings):
        if lvl == level and name == title:
            ends = [start for lv, start, _, _ in all_headings[n + 1 :] if lv <= level]
            return text[body_start : ends[0] if ends else len(text)]
    raise LookupError(f"README has no heading {marks} {title}")


def subsections(text: str, level: int = 3) -> dict[str, str]:
    """Heading text → body, for every heading of exactly ``level`` in ``text``."""
    found = [h for h in headings(text) if h[0] <= level]
    bodies = {}
    for n, (lvl, _, body_start, name) in enumerate(found):
        if lvl == level:
            end = found[n + 1][1] if n + 1 < len(found) else len(text)
            bodies[name] = text[body_start:end]
    return bodies


def code_blocks(text: str, language: str) -> list[str]:
    """The contents of every fenced block of ``language``, in order."""
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def setup_commands(text: str | None = None) -> list[str]:
    """The first two ``sh`` blocks after "## Set up": install-and-quickstart, then tests."""
    blocks = code_blocks(section(text or readme_text(), "Set up"), "sh")
    if len(blocks) < 2:
        raise LookupError("README's Set up section needs two ```sh blocks")
    commands = [block.strip() for block in blocks[:2]]
    for command in commands:
        if "\n" in command:
            raise LookupError(f"a set-up block holds more than one line: {command!r}")
    return commands
