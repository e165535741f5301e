"""Small value rules: durations, names, when, HTML tags, output paths."""

from __future__ import annotations

import pytest

from hifly_batch.manifest.values import (
    api_string,
    find_html_tag,
    is_campaign_name,
    is_item_name,
    is_truthy,
    output_path_problem,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("0.25s", 0.25), ("5m", 300), ("1.5m", 90), ("2h", 7200), (12, 12),
     (0.5, 0.5), ("30", 30), (".5s", 0.5)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", 0, "-1s", "1h30m", "5 minutes", "s", "", True, "1d"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("welcome", True), ("_x", True), ("欢迎视频", True), ("a-b_c1", True), ("1a", False),
     ("-a", False), ("a.b", False), ("a b", False), ("", False), ("a[1]", False)],
)  # fmt: skip
def test_item_names(name: str, ok: bool) -> None:
    assert is_item_name(name) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("spring-welcome", True), ("夏季促销", True), ("v1.2", True), ("../x", False),
     (".hidden", False), ("a/b", False), ("x" * 64, True), ("x" * 65, False), ("", False)],
)  # fmt: skip
def test_campaign_names(name: str, ok: bool) -> None:
    assert is_campaign_name(name) is ok


@pytest.mark.parametrize(
    ("text", "truthy"),
    [("", False), ("  False ", False), ("0", False), ("NO", False), ("none", False),
     ("yes", True), ("True", True), ("1", True), ("anything", True)],
)  # fmt: skip
def test_when(text: str, truthy: bool) -> None:
    assert is_truthy(text) is truthy


@pytest.mark.parametrize(
    ("text", "tag"),
    [("a <b>x</b>", "<b>"), ("</p>", "</p>"), ("1 < 2 and 3 > 2", None), ("<3 you>", None),
     ("<中文>", "<中文>"), ("a<", None)],
)  # fmt: skip
def test_html_tags(text: str, tag: str | None) -> None:
    assert find_html_tag(text) == tag


@pytest.mark.parametrize(
    ("path", "ok"),
    [("a/b.mp4", True), ("./a.mp4", True), ("../a.mp4", False), ("a/../../b.mp4", False),
     ("/tmp/a.mp4", False), ("C:/a.mp4", False), ("a\\b.mp4", False), ("", False),
     ("a/", False), (".", False)],
)  # fmt: skip
def test_output_paths(path: str, ok: bool) -> None:
    assert (output_path_problem(path) is None) is ok


def test_api_strings() -> None:
    assert [api_string(v) for v in (1, 1.1, 0.95, 2)] == ["1.0", "1.1", "0.95", "2.0"]
