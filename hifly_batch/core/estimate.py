"""The estimated cost of a plan in credits (SPEC §4 "Spending money").

Pure: the plan, the prior state of its items and a :class:`Rates` in, an
:class:`Estimate` out. The API document says only that the paid endpoints
"会产生积分消耗" (take credits), not how many, so the figures here are one
documented table (:data:`TABLE`), replaced by what the account really spent
once a run has measured it (:class:`Measured`, kept by ``runner/spend.py``).

A work's seconds are estimated from its text at a speaking rate per script
(:data:`CJK_PER_SECOND` characters of Chinese, Japanese or Korean, and
:data:`WORDS_PER_SECOND` words of other scripts, a second at least); an audio-driven
video lasts as long as its audio (a local file's duration, an audios item's
estimate, or :data:`UNKNOWN_SECONDS` for a remote file that cannot be read offline).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hifly_batch.core.graph import Graph, Item, ItemKind
from hifly_batch.core.planning import Action, Plan, PriorState

# Credits per second of output for each paid endpoint; an image avatar costs per avatar.
TABLE: Mapping[ItemKind, float] = {
    ItemKind.VIDEO_BY_TTS: 1.0,
    ItemKind.VIDEO_BY_AUDIO: 1.0,
    ItemKind.AUDIO_BY_TTS: 0.2,
    ItemKind.AVATAR_BY_IMAGE: 10.0,
}
PER_ITEM = frozenset({ItemKind.AVATAR_BY_IMAGE})  # priced per item, not per second
CJK_PER_SECOND = 4.5  # characters of Han, kana or hangul spoken per second
WORDS_PER_SECOND = 2.5  # words of other scripts per second (150 a minute)
UNKNOWN_SECONDS = 60.0  # a remote audio file, whose length cannot be read offline

_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_WORD = re.compile(r"[^\W_]+")  # a run of letters or digits (CJK characters are cut out first)
_SOURCES = frozenset({ItemKind.UPLOAD, ItemKind.REMOTE_ASSET, ItemKind.AUDIO_BY_TTS})

MediaSeconds = Callable[[Path], "float | None"]
"""A local audio file's duration in seconds, or None when it cannot be read."""


def speech_seconds(text: str) -> float:
    """How long ``text`` takes to speak, in seconds: CJK characters at CJK_PER_SECOND, the
    words of other scripts at WORDS_PER_SECOND, at least one second."""
    words = _WORD.findall(_CJK.sub(" ", text))
    return max(1.0, len(_CJK.findall(text)) / CJK_PER_SECOND + len(words) / WORDS_PER_SECOND)


@dataclass(frozen=True)
class Measured:
    """What runs on this account really cost, summed over the runs that measured it.

    ``credits``: the balance's drop over those runs. ``table_credits``: what the table
    prices the works they made at, from their real durations. ``seconds`` and
    ``estimated_seconds``: the text-driven works' real durations, and what their texts
    were estimated to last. The ratios correct the table and the speaking rate.
    """

    runs: int = 0
    credits: float = 0.0
    table_credits: float = 0.0
    seconds: float = 0.0
    estimated_seconds: float = 0.0

    @property
    def price_factor(self) -> float | None:
        """Credits really spent per credit the table asked, or None before a measure."""
        return self.credits / self.table_credits if self.table_credits > 0 else None

    @property
    def speech_factor(self) -> float | None:
        """Real seconds per estimated second of speech, or None before a measure."""
        return self.seconds / self.estimated_seconds if self.estimated_seconds > 0 else None

    def plus(self, other: Measured) -> Measured:
        return Measured(
            self.runs + other.runs,
            self.credits + other.credits,
            self.table_credits + other.table_credits,
            self.seconds + other.seconds,
            self.estimated_seconds + other.estimated_seconds,
        )


@dataclass(frozen=True)
class Estimate:
    """The credits a plan's paid creates are expected to take.

    ``items``: item id -> credits, for every paid create the plan sends. ``by_kind``:
    item kind -> (number of creates, credits). ``basis``: ``table`` or ``measured``.
    """

    items: Mapping[str, float] = field(default_factory=dict)
    by_kind: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    basis: str = "table"
    runs: int = 0  # how many measured runs the figures come from
    unknown_lengths: int = 0  # audio-driven works counted at UNKNOWN_SECONDS

    @property
    def credits(self) -> float:
        return sum(self.items.values())

    def describe(self) -> str:
        """One line: ``~120 credits (3 video_by_tts ~90, 1 avatar_by_image ~30); an estimate
        from the table``."""
        if not self.items:
            return "no paid creates: 0 credits"
        parts = ", ".join(
            f"{n} {kind} ~{credits:,.0f}" for kind, (n, credits) in self.by_kind.items()
        )
        basis = (
            f"the spend measured on this API over {self.runs} run(s)"
            if self.basis == "measured"
            else "the README's table (not yet measured on this API)"
        )
        unknown = (
            f"; {self.unknown_lengths} remote audio file(s) counted at {UNKNOWN_SECONDS:.0f} s"
            if self.unknown_lengths
            else ""
        )
        return f"~{self.credits:,.0f} credits ({parts}); an estimate from {basis}{unknown}"

    def as_json(self) -> dict[str, object]:
        return {
            "credits": round(self.credits, 1),
            "by_kind": {
                k: {"creates": n, "credits": round(c, 1)} for k, (n, c) in self.by_kind.items()
            },
            "basis": self.basis,
            "measured_runs": self.runs,
            "items": {item: round(credits, 2) for item, credits in self.items.items()},
        }


def creates(step_action: Action, prior: PriorState | None) -> bool:
    """Whether carrying out this action sends a create (a failed item whose task made its
    work is fetched again, not created: SPEC §5)."""
    if step_action in (Action.CREATE, Action.RECREATE):
        return True
    if step_action is Action.RETRY:
        return not (prior is not None and prior.work_exists and prior.task_id)
    return False


def seconds_of(graph: Graph, item: Item, media_seconds: MediaSeconds) -> tuple[float, bool]:
    """The estimated seconds of a work's output, and whether its length is unknown."""
    if item.kind in (ItemKind.VIDEO_BY_TTS, ItemKind.AUDIO_BY_TTS):
        return speech_seconds(item.text or ""), False
    source = next((graph[d] for d in item.deps if graph[d].kind in _SOURCES), None)
    if source is None:
        return UNKNOWN_SECONDS, True
    if source.kind is ItemKind.AUDIO_BY_TTS:
        return speech_seconds(source.text or ""), False
    if source.file is not None and (seconds := media_seconds(source.file)) is not None:
        return seconds, False
    return UNKNOWN_SECONDS, True


def estimate(
    graph: Graph,
    plan: Plan,
    prior: Mapping[str, PriorState],
    measured: Measured | None = None,
    *,
    media_seconds: MediaSeconds,
    scope: set[str] | None = None,
) -> Estimate:
    """The credits of the paid creates ``plan`` sends (only those in ``scope``, if given).

    With a ``measured`` record, the table's prices are scaled by the account's price
    factor and text-driven seconds by its speech factor."""
    price = (measured.price_factor if measured else None) or 1.0
    speech = (measured.speech_factor if measured else None) or 1.0
    items: dict[str, float] = {}
    kinds: dict[str, tuple[int, float]] = {}
    unknown = 0
    for step in plan.steps:
        item = step.item
        if item.kind not in TABLE or (scope is not None and item.id not in scope):
            continue
        if not creates(step.action, prior.get(item.id)):
            continue
        credits, unknown_length = _credits(graph, item, media_seconds, speech)
        unknown += unknown_length
        items[item.id] = credits * price
        n, total = kinds.get(item.kind.value, (0, 0.0))
        kinds[item.kind.value] = (n + 1, total + items[item.id])
    basis = "measured" if measured and measured.price_factor else "table"
    runs = measured.runs if measured and basis == "measured" else 0
    return Estimate(items, kinds, basis, runs, unknown)


def _credits(
    graph: Graph, item: Item, media_seconds: MediaSeconds, speech: float
) -> tuple[float, bool]:
    """The table's credits for one create, and whether its length was unknown."""
    if item.kind in PER_ITEM:
        return TABLE[item.kind], False
    seconds, unknown = seconds_of(graph, item, media_seconds)
    if not unknown and _spoken(graph, item):
        seconds *= speech
    return TABLE[item.kind] * seconds, unknown


def _spoken(graph: Graph, item: Item) -> bool:
    """Whether the work's length was estimated from a text (so the speech factor applies)."""
    if item.kind in (ItemKind.VIDEO_BY_TTS, ItemKind.AUDIO_BY_TTS):
        return True
    return any(graph[d].kind is ItemKind.AUDIO_BY_TTS for d in item.deps)


def table_credits(kind: ItemKind, duration_s: float | None) -> float:
    """What the table prices one finished work at, from its real duration."""
    if kind in PER_ITEM:
        return TABLE[kind]
    return TABLE.get(kind, 0.0) * (duration_s or 0.0)
