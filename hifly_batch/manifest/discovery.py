"""Finding the manifests under a folder, for ``validate --all-manifests`` (the pre-commit
hook, which runs whenever a manifest or a file one may use changes)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

SUFFIXES = (".yaml", ".yml")
# Folders that hold other programs' files, never a campaign's (hidden ones are skipped too:
# .git, .hifly, a .venv).
SKIPPED = frozenset({"node_modules", "site-packages", "__pycache__"})
_MODELINE = re.compile(r"^#\s*yaml-language-server:.*manifest\.schema\.json", re.MULTILINE)
_VERSION = re.compile(r"^version\s*:", re.MULTILINE)
_SECTION = re.compile(r"^(assets|avatars|voices|videos|audios)\s*:", re.MULTILINE)


def looks_like_manifest(text: str) -> bool:
    """Whether a YAML file's text is a hifly-batch manifest's: it names the manifest schema
    in its first-line comment, or has a top-level ``version:`` and a top-level section
    (``assets``, ``avatars``, ``voices``, ``videos``, ``audios``). Read as text, so that a
    manifest whose YAML an edit broke is still found, and then refused."""
    if _MODELINE.search(text):
        return True
    return _VERSION.search(text) is not None and _SECTION.search(text) is not None


def find_manifests(root: Path) -> list[Path]:
    """Every manifest under ``root``, sorted; hidden folders and :data:`SKIPPED` are not
    looked into."""
    return sorted(path for path in _yaml_files(root) if looks_like_manifest(_text(path)))


def _yaml_files(root: Path) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in SKIPPED)
        for name in files:
            if name.lower().endswith(SUFFIXES):
                yield Path(folder) / name


def _text(path: Path) -> str:
    """The file's text; an unreadable file reads as empty (it is no manifest here)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
