"""Located diagnostics: ``FILE:LINE:COL: path.to.field: message``.

Every check of the manifest layer reports through these types, so that
``validate`` can show every fault at once, each one where it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hifly_batch.errors import ExitStatus, HiflyBatchError

PathPart = str | int
FieldPath = tuple[PathPart, ...]


@dataclass(frozen=True, order=True)
class Location:
    """A place in a file: 1-based line and column."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One fault: where it is, which field, and what to do about it."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        field = f" {self.path}:" if self.path else ""
        return f"{self.location}:{field} {self.message}"


def format_path(parts: Iterable[PathPart]) -> str:
    """``("videos", "welcome", "title")`` -> ``videos.welcome.title``; ints as ``[i]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def item_path(section: str, name: str, key: str | None, *fields: PathPart) -> str:
    """The path of a field of one expanded item: ``videos.welcome[c0042].title``."""
    base = f"{section}.{name}" if key is None else f"{section}.{name}[{key}]"
    rest = format_path(fields)
    if not rest:
        return base
    return base + rest if rest.startswith("[") else f"{base}.{rest}"


class ManifestInvalid(HiflyBatchError):
    """The manifest (or a file it names) has faults; carries every one found."""

    exit_status = ExitStatus.INVALID

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(set(diagnostics)))
        super().__init__(self.render())

    def render(self, manifest: Path | None = None) -> str:
        """All diagnostics, one per line, then a count (``MANIFEST: N errors`` when given)."""
        lines = [str(d) for d in self.diagnostics]
        count = len(self.diagnostics)
        errors = f"{count} error{'s' if count != 1 else ''}"
        lines.append(f"{manifest}: {errors}" if manifest else f"{errors} found")
        return "\n".join(lines)


class Collector:
    """Gathers diagnostics; caps repeats of one fault across many rows."""

    def __init__(self, row_error_cap: int = 5) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._cap = row_error_cap
        self._per_group: dict[tuple[str, Location], int] = {}

    def add(self, location: Location, path: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(location, path, message))

    def add_row_error(self, group: str, location: Location, path: str, message: str) -> None:
        """Report a per-row fault; after the cap, count it into one summary line."""
        count = self._per_group.get((group, location), 0) + 1
        self._per_group[(group, location)] = count
        if count <= self._cap:
            self.add(location, path, message)

    def _summarize(self) -> None:
        for (group, location), count in self._per_group.items():
            if count > self._cap:
                more = count - self._cap
                self.add(location, group, f"… and {more} more rows with errors in this field")
        self._per_group.clear()

    def raise_if_any(self) -> None:
        """Raise :class:`ManifestInvalid` with everything collected so far."""
        self._summarize()
        if self.diagnostics:
            raise ManifestInvalid(self.diagnostics)

    def __bool__(self) -> bool:
        return bool(self.diagnostics)
