"""Videos and audios items rendered per row, and checked as the API would check them."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hifly_batch.apispec import TEXT_MAX_CHARS, TITLE_MAX_CHARS
from hifly_batch.manifest.build import did_you_mean
from hifly_batch.manifest.diagnostics import Collector, Location, item_path
from hifly_batch.manifest.model import (
    Field,
    Manifest,
    MediaKind,
    Row,
    SkippedRow,
    Work,
    WorkSpec,
)
from hifly_batch.manifest.templates import (
    Template,
    TemplateFault,
    base_context,
    compile_template,
)
from hifly_batch.manifest.values import (
    columns_named,
    control_problem,
    find_html_tag,
    invisible_problem,
    is_truthy,
    missing_file,
    normalize_output,
    output_path_problem,
    shorten,
    spoken,
)

_REFERENCE_FIELDS = ("avatar", "voice", "audio")
_SIZE_LIMITS = {"title": TITLE_MAX_CHARS, "text": TEXT_MAX_CHARS, "text_file": TEXT_MAX_CHARS}
_OTHER_FIELD_MAX = 4096  # an avatar's or voice's name, an output path, a when
_SPOKEN_FIELDS = ("title", "text")  # in the create request, so in the fingerprint


class _RowFault(Exception):
    """One field of one row is wrong; already reported."""


class Expander:
    """Renders every videos/audios entry of a manifest, reporting into ``errors``."""

    def __init__(
        self, manifest: Manifest, errors: Collector, refused_names: frozenset[str] = frozenset()
    ) -> None:
        self.manifest = manifest
        self.refused_names = refused_names
        self.errors = errors
        self.base = base_context(vars=manifest.vars, campaign=manifest.name)
        self._files: dict[Path, Template | TemplateFault] = {}
        self._reported: set[tuple[str, Path]] = set()
        self.skipped: list[SkippedRow] = []  # rows ``when`` filtered out, for reports

    def expand_all(self) -> list[Work]:
        works: list[Work] = []
        for spec in self.manifest.works.values():
            works.extend(self.expand(spec))
        return works

    def expand(self, spec: WorkSpec) -> Iterator[Work]:
        templates = self._compile(spec)
        if templates is None:
            return
        # Each reference written without a template is checked (all of them, not only up
        # to the first wrong one); a wrong one makes no work, but the rows are still
        # rendered so that their faults are said too (SPEC §3: every error in one pass).
        referenced = [self._check_literal(spec, name) for name in _REFERENCE_FIELDS]
        source = self.manifest.data.get(spec.for_each) if spec.for_each else None
        if spec.for_each and source is None:
            return
        rows: tuple[Row | None, ...] = source.rows if source is not None else (None,)
        for row in rows:
            context = self._context(row)
            try:
                when = templates.get("when")
                if when is not None and not self._wanted(spec, when, row, context):
                    self.skipped.append(self._skipped(spec, row))
                    continue
                work = self._work(spec, templates, row, context)
            except _RowFault:
                continue
            if all(referenced):
                yield work

    def _wanted(
        self, spec: WorkSpec, when: Template, row: Row | None, context: Mapping[str, Any]
    ) -> bool:
        """The ``when`` rule for this row; a value no text could be is an error."""
        rendered = self._render(spec, "when", when, row, context)
        self._check_size(spec, "when", rendered, row)
        if (problem := control_problem(rendered)) is not None:
            self._row_error(spec, "when", row, spec.fields["when"].location, f"when {problem}")
            raise _RowFault
        return is_truthy(rendered)

    def _skipped(self, spec: WorkSpec, row: Row | None) -> SkippedRow:
        """The record of a row ``when`` filtered out; its data file is named relative to
        the manifest's folder, as the manifest names it, wherever the manifest was
        named from."""
        if row is None:
            return SkippedRow(spec.section, spec.name, None, None)
        where = row.location
        base = Path(self.manifest.file).parent
        with contextlib.suppress(ValueError):  # (a file outside it keeps its name)
            where = replace(where, file=Path(where.file).relative_to(base).as_posix())
        return SkippedRow(spec.section, spec.name, row.key, where)

    def _context(self, row: Row | None) -> dict[str, Any]:
        if row is None:
            return self.base
        return {**self.base, "row": row.values, "key": row.key, "index": row.index}

    def _compile(self, spec: WorkSpec) -> dict[str, Template] | None:
        compiled, ok = {}, True
        for name, field in spec.fields.items():
            try:
                compiled[name] = compile_template(
                    field.text, _template_name(field), self.manifest.root
                )
            except TemplateFault as exc:
                path = item_path(spec.section, spec.name, None, name)
                self.errors.add(field.line_of(exc.line), path, exc.message)
                ok = False
        return compiled if ok else None

    def _check_literal(self, spec: WorkSpec, name: str) -> bool:
        """A reference written without a template is checked once, not per row."""
        field = spec.fields.get(name)
        if field is None or field.is_template:
            return True
        if field.text in self.refused_names:
            return False  # its entry was refused by the schema and reported there
        problem = self._reference_problem(name, field.text)
        if problem:
            self.errors.add(field.location, item_path(spec.section, spec.name, None, name), problem)
        return problem is None

    def _render(
        self,
        spec: WorkSpec,
        name: str,
        template: Template,
        row: Row | None,
        context: Mapping[str, Any],
    ) -> str:
        try:
            return template.render(context)
        except TemplateFault as exc:
            self._row_error(spec, name, row, spec.fields[name].line_of(exc.line), exc.message)
            raise _RowFault from None

    def _row_error(
        self, spec: WorkSpec, name: str, row: Row | None, where: Location, message: str
    ) -> None:
        path = item_path(spec.section, spec.name, row.key if row else None, name)
        message = columns_named(message, row.values if row else {}, self.manifest.vars)
        if row is not None:
            message = f"{message} ({row.describe()})"
        group = item_path(spec.section, spec.name, None, name)
        self.errors.add_row_error(group, where, path, message)

    def _work(
        self,
        spec: WorkSpec,
        templates: dict[str, Template],
        row: Row | None,
        context: Mapping[str, Any],
    ) -> Work:
        values: dict[str, str] = {}
        raw: dict[str, str] = {}  # title and text as version 1.0 rendered them
        failed = False  # every field is rendered, so that each fault of the row is said
        for name, template in templates.items():
            if name in ("when", "text_file"):
                continue
            try:
                rendered = self._render(spec, name, template, row, context)
                self._check_size(spec, name, rendered, row)
            except _RowFault:
                failed = True
                continue
            values[name] = spoken(rendered)
            if name in _SPOKEN_FIELDS:
                raw[name] = _legacy(template, rendered, context)
        if "text_file" in templates:
            try:
                text, raw["text"] = self._text_file(spec, templates["text_file"], row, context)
                self._check_size(spec, "text_file", text, row)
                values["text"] = spoken(text)
            except _RowFault:
                failed = True
        title = values.get("title") or None
        checks = [  # of every field that rendered, so that each fault of the row is said
            *(
                functools.partial(self._check_reference, spec, name, values[name], row)
                for name in _REFERENCE_FIELDS
                if name in values and spec.fields[name].is_template
            ),
            functools.partial(self._check_title, spec, title, row),
        ]
        if "text" in values:
            checks.append(functools.partial(self._check_text, spec, values["text"], row))
        for check in checks:
            try:
                check()
            except _RowFault:
                failed = True
        if "output" in templates and "output" not in values:
            raise _RowFault  # (its render said why)
        output, default = self._output(spec, values.get("output"), row)  # (says its own)
        if failed:
            raise _RowFault
        return Work(
            spec.section,
            spec.name,
            row.key if row else None,
            row.index if row else None,
            row,
            title=title,
            text=values.get("text"),
            avatar=values.get("avatar"),
            voice=values.get("voice"),
            audio=self._audio_item(values.get("audio")),
            output=output,
            output_default=default,
            api_params=spec.api_params,
            legacy={name: text for name, text in raw.items() if text != values.get(name)},
        )

    # -- references --------------------------------------------------------------

    def _reference_problem(self, name: str, value: str) -> str | None:
        m = self.manifest
        if name == "avatar" and value not in m.avatars:
            return f"{value!r} is not an avatar" + did_you_mean(value, list(m.avatars))
        if name == "voice" and value not in m.voices:
            return f"{value!r} is not a voice" + did_you_mean(value, list(m.voices))
        if name == "audio":
            return self._audio_problem(value)
        return None

    def _audio_problem(self, value: str) -> str | None:
        m = self.manifest
        work = m.works.get(value)
        if work is not None:
            return None if work.section == "audios" else f"{value!r} is a videos item, not audio"
        asset = m.assets.get(value)
        if asset is None:
            names = list(m.assets) + [w for w, s in m.works.items() if s.section == "audios"]
            return f"{value!r} is not an audio asset or audios item" + did_you_mean(value, names)
        if asset.url and asset.media not in (MediaKind.AUDIO, MediaKind.UNKNOWN):
            return f"assets.{value} is not an audio URL (mp3, m4a, wav)"
        return None  # local files are checked for their use in media.py

    def _check_reference(self, spec: WorkSpec, name: str, value: str, row: Row | None) -> None:
        if value in self.refused_names:
            raise _RowFault
        problem = self._reference_problem(name, value)
        if problem:
            self._row_error(spec, name, row, spec.fields[name].location, problem)
            raise _RowFault

    def _audio_item(self, value: str | None) -> str | None:
        """``assets.x`` or ``audios.y`` (paired to a row key later, in the graph)."""
        if value is None:
            return None
        return f"audios.{value}" if value in self.manifest.works else f"assets.{value}"

    # -- rendered values -----------------------------------------------------------

    def _check_size(self, spec: WorkSpec, name: str, rendered: str, row: Row | None) -> None:
        """A rendered value far past its field's limit is refused before it is normalized
        and checked, which would take milliseconds a row for a megabyte."""
        limit = _SIZE_LIMITS.get(name, _OTHER_FIELD_MAX)
        if len(rendered) > 2 * limit + 1000:  # (room for whitespace that is stripped)
            what = "the text" if name == "text_file" else f"the {name}"
            message = f"{what} has {len(rendered):,} characters, at most {limit:,}"
            self._row_error(spec, name, row, spec.fields[name].location, message)
            raise _RowFault

    def _check_title(self, spec: WorkSpec, title: str | None, row: Row | None) -> None:
        message = None
        if title is not None and len(title) > TITLE_MAX_CHARS:
            message = (
                f"title has {len(title)} characters, at most {TITLE_MAX_CHARS}: {shorten(title)!r}"
            )
        elif title is not None and (problem := control_problem(title)) is not None:
            message = f"the title {problem}"
        if message:
            self._row_error(spec, "title", row, spec.fields["title"].location, message)
            raise _RowFault

    def _check_text(self, spec: WorkSpec, text: str, row: Row | None) -> None:
        name = "text" if "text" in spec.fields else "text_file"
        problem = None
        if not text.strip():
            problem = "the text is empty"
        elif len(text) > TEXT_MAX_CHARS:
            problem = f"the text has {len(text)} characters, at most {TEXT_MAX_CHARS}"
        elif (tag := find_html_tag(text)) is not None:
            problem = f"the text contains an HTML tag {tag!r}, which the API refuses"
        elif (control := control_problem(text)) is not None:
            problem = f"the text {control}"
        if problem:
            self._row_error(spec, name, row, spec.fields[name].location, problem)
            raise _RowFault

    def _output(self, spec: WorkSpec, rendered: str | None, row: Row | None) -> tuple[str, bool]:
        if rendered is None:
            ext = "mp4" if spec.section == "videos" else "mp3"
            stem = f"{spec.section}/{spec.name}" + (f"/{row.key}" if row else "")
            rendered, default = f"{stem}.{ext}", True
        else:
            default = False
        problem = output_path_problem(rendered)
        if problem:
            field = spec.fields.get("output")
            where = field.location if field else spec.location
            self._row_error(spec, "output", row, where, problem)
            raise _RowFault
        return normalize_output(rendered), default

    def _text_file(
        self, spec: WorkSpec, template: Template, row: Row | None, context: Mapping[str, Any]
    ) -> tuple[str, str]:
        """The text the file renders, and what version 1.0 rendered."""
        relative = self._render(spec, "text_file", template, row, context).strip()
        if (problem := invisible_problem(relative)) is not None:
            self._row_error(spec, "text_file", row, spec.fields["text_file"].location,
                            f"the path {problem}")  # fmt: skip
            raise _RowFault
        path = (self.manifest.root / relative).absolute()
        if not template.literal and not path.resolve().is_relative_to(self.manifest.root.resolve()):
            # A path written in the manifest may lead anywhere, as an asset's may; one a
            # row's value chooses picks among the campaign's own files only.
            self._row_error(spec, "text_file", row, spec.fields["text_file"].location,
                            f"{relative!r} leads outside the manifest's folder; a text_file "
                            "chosen by a value must be a file inside it")  # fmt: skip
            raise _RowFault
        loaded = self._load_file(path)
        if isinstance(loaded, TemplateFault):
            # A file that cannot be read or compiled is reported once, not per row.
            if (spec.name, path) not in self._reported:
                self._reported.add((spec.name, path))
                self._file_error(spec, row, path, loaded)
            raise _RowFault
        try:
            rendered = loaded.render(context)
        except TemplateFault as exc:
            self._file_error(spec, row, path, exc)
            raise _RowFault from None
        return rendered, _legacy(loaded, rendered, context)

    def _file_error(self, spec: WorkSpec, row: Row | None, path: Path, exc: TemplateFault) -> None:
        """At the template file's line when known, naming the manifest field; else at the field."""
        field = spec.fields["text_file"]
        if exc.line is None:
            self._row_error(spec, "text_file", row, field.location, exc.message)
            return
        where = Location(self.manifest.display(path), exc.line, 1)
        self._row_error(
            spec, "text_file", row, where, f"{exc.message}; text_file at {field.location}"
        )

    def _load_file(self, path: Path) -> Template | TemplateFault:
        if path not in self._files:
            shown = self.manifest.display(path)
            try:
                source = path.read_text(encoding="utf-8-sig")
                self._files[path] = compile_template(source, shown, self.manifest.root, path.parent)
            except FileNotFoundError:
                self._files[path] = TemplateFault(f"template {missing_file(shown)}")
            except UnicodeDecodeError:
                self._files[path] = TemplateFault(f"{shown} is not UTF-8; save it as UTF-8")
            except OSError as exc:
                self._files[path] = TemplateFault(f"cannot read {shown}: {exc.strerror or exc}")
            except TemplateFault as exc:
                self._files[path] = exc
        return self._files[path]


def _legacy(template: Template, rendered: str, context: Mapping[str, Any]) -> str:
    """What version 1.0 rendered: ``rendered`` itself unless a block tag is trimmed now."""
    if template.legacy is None:
        return rendered
    try:
        return template.render_legacy(context)
    except TemplateFault:  # nothing of 1.0's to recognise
        return rendered


def _template_name(field: Field) -> str:
    return f"{field.location.file}:{field.location.line}"
