"""Files written whole or not at all, and a clear word when they cannot be written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hifly_batch import files
from hifly_batch.files import FileWriteError, write_atomically


def test_a_file_is_replaced_whole_and_readable_by_everyone(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.csv"
    write_atomically(path, "a,b\r\n1,2\r\n")
    write_atomically(path, "a,b\r\n3,4\r\n")
    assert path.read_bytes() == b"a,b\r\n3,4\r\n"  # no newline translation
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["report.csv"]


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "free some space there"), (errno.EROFS, "make the folder writable"),
     (errno.EIO, "check that the folder exists")],
)  # fmt: skip
def test_a_write_that_fails_says_where_and_what_to_do_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    path = tmp_path / "report.csv"
    path.write_text("old")

    def failing(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(FileWriteError, match=advice) as caught:
        write_atomically(path, "new")
    assert str(caught.value).startswith(f"{path}: cannot be written ({os.strerror(code)})")
    assert caught.value.exit_status == 3
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_leftovers_are_the_temporary_files_of_one_path(tmp_path: Path) -> None:
    for name in (".c.lock.a1.tmp", ".c.lock.b2.tmp", ".other.lock.c3.tmp", "c.lock"):
        (tmp_path / name).write_text("")
    assert [p.name for p in files.leftovers(tmp_path / "c.lock")] == [
        ".c.lock.a1.tmp", ".c.lock.b2.tmp"
    ]  # fmt: skip
