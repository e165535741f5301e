"""The run's output folder: where each output goes, and never outside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hifly_batch.manifest.media import file_sha256
from hifly_batch.runner.errors import OutputOutside


class OutputFolder:
    """Places outputs under one folder, refusing links and ``..`` that lead elsewhere.

    Each sub-folder is checked once per run (resolving links costs a system
    call per path component). The file itself needs no check: it is put in
    place by a rename, which replaces a link there rather than following it.
    """

    def __init__(self, root: Path) -> None:
        self.shown = root
        self.root = Path(os.path.realpath(root))
        self._checked: set[Path] = set()

    def remove_leftovers(self) -> int:
        """Delete the temporary files of downloads and reports a killed run left; returns
        how many.

        Only one run holds the state's lock, so no download is under way now.
        """
        if not self.root.is_dir():
            return 0
        reports = [p for p in self.root.glob(".report.*") if p.name.endswith(".tmp")]
        leftovers = [p for p in [*self.root.rglob(".*.part"), *reports] if p.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def whole(self, relative: str, size: int | None, sha256: str | None = None) -> bool:
        """A file is saved at ``relative`` with ``size`` bytes (any size when None) and,
        when ``sha256`` is given, bytes of that hash (read only then: it costs a read)."""
        path = self.root / relative
        try:
            found = path.stat()
        except OSError:
            return False
        if not (stat.S_ISREG(found.st_mode) and size in (None, found.st_size)):
            return False
        try:
            return sha256 is None or file_sha256(path) == sha256
        except OSError:
            return False

    def existing(self, relative: str) -> Path | None:
        """The file saved at ``relative`` when it is one, inside the folder; else None."""
        path = self.root / relative
        inside = Path(os.path.realpath(path)).is_relative_to(self.root)
        return path if inside and path.is_file() else None

    def destination(self, relative: str) -> Path:
        """Where ``relative`` goes; its folder exists when this returns."""
        path = self.root / relative
        folder = path.parent
        if folder not in self._checked:
            folder.mkdir(parents=True, exist_ok=True)
            if not Path(os.path.realpath(folder)).is_relative_to(self.root):
                raise OutputOutside(f"output {relative} would be written outside {self.shown}")
            self._checked.add(folder)
        return path
