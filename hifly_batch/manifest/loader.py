"""Loading a manifest end to end: YAML, schema, model, rows, rendered checks, media.

:func:`load_campaign` is the one entry point: it returns a :class:`Campaign`
or raises :class:`ManifestInvalid` carrying every fault found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

from hifly_batch.manifest import budget
from hifly_batch.manifest.build import Builder
from hifly_batch.manifest.diagnostics import (
    Collector,
    Diagnostic,
    Location,
    ManifestInvalid,
    item_path,
)
from hifly_batch.manifest.expand import Expander
from hifly_batch.manifest.media import (
    AVATAR_IMAGE,
    AVATAR_VIDEO,
    DRIVING_AUDIO,
    VOICE_SAMPLE,
    Purpose,
    check_uses,
)
from hifly_batch.manifest.model import (
    Asset,
    AvatarSource,
    Campaign,
    Manifest,
    VoiceSource,
    Work,
)
from hifly_batch.manifest.schema import schema_diagnostics
from hifly_batch.manifest.sources import build_sources
from hifly_batch.manifest.templates import base_context
from hifly_batch.manifest.yamlload import YamlDocument, read_yaml


def load_campaign(path: Path, shown: str | None = None) -> Campaign:
    """Validate the manifest at ``path`` completely; ``shown`` names it in diagnostics."""
    shown = shown if shown is not None else str(path)
    doc = read_yaml(_read_manifest(path, shown), shown)
    errors = Collector()
    errors.diagnostics.extend(doc.faults)
    diagnostics, refused = schema_diagnostics(doc)
    errors.diagnostics.extend(d for d in diagnostics if not _said(d, doc))
    refused |= doc.refused
    refused_names = frozenset(p[1] for p in refused if len(p) == 2 and isinstance(p[1], str))
    with budget.campaign():  # (keys, then every field of every row)
        manifest = _build_manifest(doc, path.absolute(), errors, refused)
        expander = Expander(manifest, errors, refused_names)
        works = expander.expand_all()
    works = _pair_audio(manifest, works, errors)
    _check_voice_samples(manifest, works, errors)
    _check_outputs(manifest, works, errors)
    hashes = check_uses(_uses(manifest, works), errors)
    errors.raise_if_any()
    return Campaign(manifest, tuple(works), MappingProxyType(hashes), tuple(expander.skipped))


def _said(diagnostic: Diagnostic, doc: YamlDocument) -> bool:
    """Whether the schema's ``diagnostic`` is about a value YAML already refused (its
    tag), which the schema then saw as null."""
    return any(
        fault.location == diagnostic.location and fault.path == diagnostic.path
        for fault in doc.faults
    )


def _read_manifest(path: Path, shown: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        message = f"cannot read the manifest: {exc.strerror or exc}"
        raise ManifestInvalid([Diagnostic(Location(shown), "", message)]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = "the manifest is not UTF-8; save it as UTF-8"
        raise ManifestInvalid([Diagnostic(Location(shown, line), "", message)]) from None


def _build_manifest(
    doc: YamlDocument, path: Path, errors: Collector, refused: set[tuple[str | int, ...]]
) -> Manifest:
    builder = Builder(doc, path, errors, refused)
    name = builder.campaign_name()
    settings = builder.settings(name)
    builder.check_names()
    assets = builder.assets()
    works = builder.works()
    variables = builder.data.get("vars") if isinstance(builder.data.get("vars"), dict) else {}
    context = base_context(vars=variables, campaign=name)
    return Manifest(
        path=path,
        file=doc.file,
        root=path.parent,
        name=name,
        settings=settings,
        vars=MappingProxyType(dict(variables or {})),
        assets=MappingProxyType(assets),
        data=MappingProxyType(
            build_sources(doc, builder.entries("data"), path.parent, context, errors)
        ),
        avatars=MappingProxyType(builder.avatars(assets)),
        voices=MappingProxyType(builder.voices(assets, works)),
        works=MappingProxyType(works),
    )


def _pair_audio(manifest: Manifest, works: list[Work], errors: Collector) -> list[Work]:
    """A video driven by an audios item takes that item's output for the same row."""
    made = {w.item_id for w in works}
    paired = []
    for work in works:
        if work.audio is None or not work.audio.startswith("audios."):
            paired.append(work)
            continue
        spec = manifest.works[work.audio.split(".", 1)[1]]
        target = work.audio
        if spec.for_each is not None:
            if spec.for_each != manifest.works[work.name].for_each:
                _audio_error(
                    manifest,
                    work,
                    errors,
                    f"{target} makes one audio per row of {spec.for_each}; a video can use it "
                    f"only with for_each: {spec.for_each}",
                )
                continue
            target = f"{target}[{work.key}]"
        if target not in made:
            _audio_error(manifest, work, errors, f"{target} is not made (its when filters it out)")
            continue
        paired.append(dataclasses.replace(work, audio=target))
    return paired


def _audio_error(manifest: Manifest, work: Work, errors: Collector, message: str) -> None:
    field = manifest.works[work.name].fields["audio"]
    if work.row is not None:
        message += f" ({work.row.describe()})"
    errors.add(field.location, item_path(work.section, work.name, work.key, "audio"), message)


def _check_voice_samples(manifest: Manifest, works: list[Work], errors: Collector) -> None:
    """A voice cloned from an audios item needs exactly one such audio."""
    made = {w.item_id for w in works}
    for voice in manifest.voices.values():
        spec = manifest.works.get(voice.ref) if voice.source is VoiceSource.AUDIO else None
        if spec is None or spec.section != "audios":
            continue
        where = voice.audio_location or voice.location
        path = f"voices.{voice.name}.audio"
        if spec.for_each is not None:
            errors.add(where, path, f"audios.{spec.name} has for_each; a voice needs one sample")
        elif f"audios.{spec.name}" not in made:
            errors.add(where, path, f"audios.{spec.name} is not made (its when is false)")


def _check_outputs(manifest: Manifest, works: list[Work], errors: Collector) -> None:
    """Output paths are unique (ignoring case, for case-insensitive file systems)."""
    seen: dict[str, Work] = {}
    for work in works:
        folded = work.output.casefold()
        first = seen.setdefault(folded, work)
        if first is work:
            continue
        spec = manifest.works[work.name]
        field = spec.fields.get("output")
        where = field.location if field else spec.location
        message = f"output {work.output!r} is also the output of {first.item_id}"
        errors.add(where, item_path(work.section, work.name, work.key, "output"), message)


def _uses(manifest: Manifest, works: list[Work]) -> Iterator[tuple[Asset, Purpose, str]]:
    """Every (asset, purpose, user) the campaign needs."""
    for avatar in manifest.avatars.values():
        if avatar.source is not AvatarSource.ID and avatar.ref in manifest.assets:
            purpose = AVATAR_VIDEO if avatar.source is AvatarSource.VIDEO else AVATAR_IMAGE
            yield manifest.assets[avatar.ref], purpose, avatar.item_id
    for voice in manifest.voices.values():
        if voice.source is VoiceSource.AUDIO and voice.ref in manifest.assets:
            yield manifest.assets[voice.ref], VOICE_SAMPLE, voice.item_id
    for work in works:
        if work.audio is not None and work.audio.startswith("assets."):
            yield manifest.assets[work.audio.split(".", 1)[1]], DRIVING_AUDIO, work.item_id
