"""The output folder keeps every output inside it, links and ``..`` included."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hifly_batch.runner.outputs import OutputFolder, OutputOutside


def test_destination_makes_its_folder(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "out")
    dest = folder.destination("videos/welcome/c1.mp4")
    assert dest.parent.is_dir() and dest.name == "c1.mp4"
    assert dest.is_relative_to(folder.root)


def test_a_linked_folder_leading_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "videos").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputOutside, match="outside"):
        OutputFolder(tmp_path / "out").destination("videos/c1.mp4")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_dot_dot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputOutside):
        OutputFolder(tmp_path / "out").destination("../../escaped/c1.mp4")


def test_a_link_inside_the_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "out" / "real").mkdir(parents=True)
    (tmp_path / "out" / "alias").symlink_to(tmp_path / "out" / "real")
    assert OutputFolder(tmp_path / "out").destination("alias/c1.mp4").name == "c1.mp4"


def test_leftover_partial_downloads_are_removed(tmp_path: Path) -> None:
    (tmp_path / "out" / "videos").mkdir(parents=True)
    (tmp_path / "out" / "videos" / ".c1.mp4.ab12cd34.part").write_bytes(b"half")
    (tmp_path / "out" / "videos" / "c2.mp4").write_bytes(b"whole")
    folder = OutputFolder(tmp_path / "out")
    assert folder.remove_leftovers() == 1
    assert [p.name for p in (tmp_path / "out" / "videos").iterdir()] == ["c2.mp4"]
    assert OutputFolder(tmp_path / "absent").remove_leftovers() == 0


def test_whole_means_a_file_of_the_size_it_was_saved_with(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"12345")
    (tmp_path / "dir.mp4").mkdir()
    assert folder.whole("a.mp4", 5) and folder.whole("a.mp4", None)
    assert not folder.whole("a.mp4", 4)  # damaged: another size
    assert not folder.whole("gone.mp4", None) and not folder.whole("dir.mp4", None)
    assert folder.whole("a.mp4", 5, hashlib.sha256(b"12345").hexdigest())
    assert not folder.whole("a.mp4", 5, hashlib.sha256(b"54321").hexdigest())  # another file
