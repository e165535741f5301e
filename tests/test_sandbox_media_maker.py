"""The sandbox's generated media: real durations, valid containers, bytes unique per tag."""

from __future__ import annotations

import io
import itertools
import pathlib
import struct
import wave

import pytest

from hifly_batch.sandbox import media_maker as media

DURATIONS = [0.5, 1.0, 2.25, 7.5, 13.3, 60.0]


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, payload) pairs of the boxes in `data`, which must tile it exactly."""
    boxes = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8, f"box {kind!r} at {pos} has size {size}"
        assert pos + size <= len(data), f"box {kind!r} at {pos} runs past the end"
        boxes.append((kind, data[pos + 8 : pos + size]))
        pos += size
    return boxes


def _child(payload: bytes, *path: bytes) -> bytes:
    """The payload of the box reached by following `path` down from `payload`."""
    for kind in path:
        found = dict(_boxes(payload))
        assert kind in found, f"no {kind!r} among {list(found)}"
        payload = found[kind]
    return payload


def _write(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("seconds", DURATIONS)
def test_mp4_duration_reads_back(tmp_path: pathlib.Path, seconds: float) -> None:
    path = _write(tmp_path, "out.mp4", media.make_mp4(seconds, "t"))
    assert media.read_duration(path) == pytest.approx(seconds, abs=0.05)


@pytest.mark.parametrize("seconds", DURATIONS)
def test_wav_duration_reads_back(tmp_path: pathlib.Path, seconds: float) -> None:
    path = _write(tmp_path, "out.wav", media.make_wav(seconds, "t"))
    assert media.read_duration(path) == pytest.approx(seconds, abs=0.05)


def test_mp4_shorter_than_minimum_is_raised_to_half_a_second(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, "out.mp4", media.make_mp4(0.1, "t"))
    assert media.read_duration(path) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("make", [media.make_mp4, media.make_wav])
def test_bytes_depend_on_tag_only_as_given(make) -> None:
    assert make(3.0, "task-1") == make(3.0, "task-1")
    assert make(3.0, "task-1") != make(3.0, "task-2")
    assert make(3.0, "任务") != make(3.0, "task-1")


def test_mp4_top_level_boxes() -> None:
    data = media.make_mp4(7.5, "abc")
    kinds = [kind for kind, _ in _boxes(data)]
    assert kinds == [b"ftyp", b"free", b"moov", b"mdat"]
    top = dict(_boxes(data))
    assert top[b"ftyp"].startswith(b"isom")
    assert b"abc" in top[b"free"]


def test_mp4_track_describes_h264_and_points_into_mdat() -> None:
    data = media.make_mp4(7.5, "abc")
    stbl = _child(data, b"moov", b"trak", b"mdia", b"minf", b"stbl")
    stsd = _child(stbl, b"stsd")
    assert stsd[12:16] == b"avc1"
    assert b"avcC" in stsd
    (offset,) = struct.unpack_from(">I", _child(stbl, b"stco"), 8)
    assert data[offset - 4 : offset] == b"mdat"
    _, _, count = struct.unpack_from(">III", _child(stbl, b"stsz"))
    assert count == 8  # one frame a second, the last one half a second long
    mdhd = _child(data, b"moov", b"trak", b"mdia", b"mdhd")
    timescale, ticks = struct.unpack_from(">II", mdhd, 12)
    assert ticks / timescale == pytest.approx(7.5)


def test_mp4_stays_small() -> None:
    assert len(media.make_mp4(60.0, "t")) < 50_000


def test_wav_parses_with_wave_module() -> None:
    data = media.make_wav(2.5, "tag")
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getframerate() in (8000, 16000)
        assert wav.getnframes() == round(2.5 * wav.getframerate())
        frames = wav.readframes(wav.getnframes())
    assert any(frames), "the tone should not be pure silence"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    assert b"LIST" in data and b"tag" in data


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("missing.mp4", None),
        ("empty.wav", b""),
        ("junk.mp4", b"\x00\x01not a video at all" * 10),
        ("text.mp3", b"hello"),
    ],
)
def test_read_duration_unreadable_is_none(
    tmp_path: pathlib.Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert media.read_duration(path) is None


def test_read_duration_of_directory_is_none(tmp_path: pathlib.Path) -> None:
    assert media.read_duration(tmp_path) is None


def test_speech_seconds_minimum_and_rates() -> None:
    assert media.speech_seconds("") == 1.0
    assert media.speech_seconds("你好") == 1.0
    assert media.speech_seconds("字" * 45) == pytest.approx(10.0)
    assert media.speech_seconds(" ".join(["word"] * 25)) == pytest.approx(10.0)


def test_speech_seconds_is_monotonic() -> None:
    text = "大家好，欢迎来到 HiFly 的 demo video. 今天我们介绍 batch 生成。" * 3
    values = [media.speech_seconds(text[:end]) for end in range(len(text) + 1)]
    assert all(v >= 1.0 for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[-1] > values[len(values) // 2] > 1.0
