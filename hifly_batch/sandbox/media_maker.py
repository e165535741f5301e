"""Real, playable media files for the sandbox's finished tasks.

Videos are H.264 MP4 files and audio is PCM WAV, both built in pure Python so
that no encoder is needed at run time. The video shows one pre-encoded 160x90
coloured card (``media/card.h264``, see ``media/README``) once a second for the
whole duration; only the MP4 container around it is written here.
"""

from __future__ import annotations

import functools
import io
import math
import pathlib
import re
import struct
import wave
from importlib import resources

import mutagen

# Dimensions of the frame in media/card.h264 (they must match its SPS).
_FRAME_WIDTH = 160
_FRAME_HEIGHT = 90
_TIMESCALE = 1000  # milliseconds: enough precision for any requested duration
_MIN_VIDEO_SECONDS = 0.5

_WAV_RATE = 8000
_TONE_HZ = 500  # divides the sample rate, so one period tiles exactly
_TONE_AMPLITUDE = 0.05  # about -26 dBFS: audible but soft

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_CJK_PER_SECOND = 4.5
_WORDS_PER_SECOND = 2.5

_IDENTITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


# --- H.264 frame -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _card_nals() -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """The SPS, the PPS and the IDR slices of the packaged Annex-B stream."""
    data = resources.files("hifly_batch.sandbox").joinpath("media", "card.h264").read_bytes()
    params: dict[int, bytes] = {}
    slices: list[bytes] = []
    for unit in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", data):
        if not unit:
            continue
        kind = unit[0] & 0x1F
        if kind == 5:
            slices.append(unit)
        else:  # the encoder repeats SPS/PPS before each IDR; they are identical
            params.setdefault(kind, unit)
    return params[7], params[8], tuple(slices)


# --- MP4 boxes --------------------------------------------------------------


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _frames(ticks: int) -> tuple[list[bytes], list[int]]:
    """Length-prefixed samples at one frame per second and their durations in ticks.

    Consecutive IDR pictures must carry different idr_pic_id values, so the two
    packaged slices (ids 0 and 1) alternate; a frame every second also lets
    players seek anywhere and still find a picture.
    """
    _, _, slices = _card_nals()
    count = max(1, math.ceil(ticks / _TIMESCALE))
    picked = (slices[i % len(slices)] for i in range(count))
    samples = [struct.pack(">I", len(nal)) + nal for nal in picked]
    durations = [_TIMESCALE] * (count - 1) + [ticks - _TIMESCALE * (count - 1)]
    return samples, durations


def _stts(durations: list[int]) -> bytes:
    """Run-length coded sample durations."""
    runs: list[list[int]] = []
    for delta in durations:
        if runs and runs[-1][1] == delta:
            runs[-1][0] += 1
        else:
            runs.append([1, delta])
    entries = b"".join(struct.pack(">II", count, delta) for count, delta in runs)
    return _full_box(b"stts", 0, 0, struct.pack(">I", len(runs)), entries)


def _avc1(sps: bytes, pps: bytes) -> bytes:
    """The avc1 sample entry with its decoder configuration (avcC)."""
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),  # 4-byte NAL lengths, one SPS
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    return _box(
        b"avc1",
        bytes(6),
        struct.pack(">HHH12x", 1, 0, 0),  # data reference index, pre-defined fields
        struct.pack(">HHII4xH", _FRAME_WIDTH, _FRAME_HEIGHT, 0x480000, 0x480000, 1),
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )


def _stbl(sps: bytes, pps: bytes, durations: list[int], sizes: list[int], offset: int) -> bytes:
    """All samples in one chunk; no stss box, which means every sample is a sync sample."""
    return _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(sps, pps)),
        _stts(durations),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(sizes), 1)),
        _full_box(b"stsz", 0, 0, struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, offset)),
    )


def _moov(durations: list[int], sizes: list[int], offset: int) -> bytes:
    """The movie header and its single video track."""
    ticks = sum(durations)
    sps, pps, _ = _card_nals()
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH10x", 0, 0, _TIMESCALE, ticks, 0x10000, 0x100),
        _IDENTITY_MATRIX,
        struct.pack(">24xI", 2),  # next track id
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # flags: track enabled and used in the movie
        struct.pack(">IIII4x8xhhH2x", 0, 0, 1, ticks, 0, 0, 0),
        _IDENTITY_MATRIX,
        struct.pack(">II", _FRAME_WIDTH << 16, _FRAME_HEIGHT << 16),
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, ticks, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"vide"), b"VideoHandler\x00")
    dref = _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))
    minf = _box(
        b"minf",
        _full_box(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", dref),
        _stbl(sps, pps, durations, sizes, offset),
    )
    return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))


def make_mp4(seconds: float, tag: str) -> bytes:
    """A valid, playable H.264 MP4 whose duration is `seconds` (>= 0.5), bytes unique per `tag`.

    Requests under 0.5 s get a 0.5 s clip.
    """
    ticks = round(max(seconds, _MIN_VIDEO_SECONDS) * _TIMESCALE)
    samples, durations = _frames(ticks)
    sizes = [len(sample) for sample in samples]
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    free = _box(b"free", b"hifly-sandbox:" + tag.encode("utf-8"))
    # The moov box has the same size whatever the chunk offset, so measure it first.
    head = len(ftyp) + len(free) + len(_moov(durations, sizes, 0))
    moov = _moov(durations, sizes, head + 8)
    return ftyp + free + moov + _box(b"mdat", *samples)


# --- WAV --------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tone_period() -> bytes:
    """One period of the tone as 16-bit little-endian samples."""
    count = _WAV_RATE // _TONE_HZ
    peak = _TONE_AMPLITUDE * 32767
    return b"".join(
        struct.pack("<h", round(peak * math.sin(2 * math.pi * i / count))) for i in range(count)
    )


def _info_chunk(tag: str) -> bytes:
    """A LIST/INFO chunk carrying the tag as a comment (ICMT), padded as RIFF requires."""
    text = ("hifly-sandbox:" + tag).encode("utf-8") + b"\x00"
    if len(text) % 2:
        text += b"\x00"
    body = b"INFO" + b"ICMT" + struct.pack("<I", len(text)) + text
    return b"LIST" + struct.pack("<I", len(body)) + body


def make_wav(seconds: float, tag: str) -> bytes:
    """A valid PCM WAV of `seconds` length, bytes unique per `tag`.

    The sound is a quiet 500 Hz tone, 8 kHz 16-bit mono to keep files small.
    """
    frames = max(0, round(seconds * _WAV_RATE))
    period = _tone_period()
    samples = period * (frames // (len(period) // 2) + 1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_WAV_RATE)
        out.writeframes(samples[: frames * 2])
    riff = buffer.getvalue() + _info_chunk(tag)
    # The INFO chunk follows the data chunk, so only the RIFF size needs fixing.
    return riff[:4] + struct.pack("<I", len(riff) - 8) + riff[8:]


# --- Reading and estimating -------------------------------------------------


def read_duration(path: pathlib.Path) -> float | None:
    """Duration in seconds of a wav/mp3/m4a/mp4/mov file read with mutagen.

    None when the file is missing, of another type or cannot be read; never raises.
    """
    try:
        parsed = mutagen.File(str(path))
        length = getattr(getattr(parsed, "info", None), "length", None)
    except Exception:  # mutagen raises many kinds on damaged files; all mean "unknown"
        return None
    if not isinstance(length, (int, float)) or not math.isfinite(length) or length <= 0:
        return None
    return float(length)


def speech_seconds(text: str) -> float:
    """How long the text takes to speak, in seconds, at least 1.0 s.

    About 4.5 Chinese (CJK) characters or 2.5 English words per second; mixed text adds both.
    """
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    return max(1.0, cjk / _CJK_PER_SECOND + words / _WORDS_PER_SECOND)
