"""The state's lock: a second process is refused, naming the holder; a dead holder frees it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hifly_batch.runner.lock import StateLocked, run_lock, state_file_lock


@contextlib.contextmanager
def held_elsewhere(lock: str, state: Path) -> Iterator[int]:
    """Another process holding ``lock`` (a context manager of hifly_batch.runner.lock) on
    ``state``; yields its pid, and kills it after."""
    holder = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from hifly_batch.runner.lock import {lock}
        with {lock}(Path({str(state)!r})):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotted"])
def test_a_second_process_is_refused_with_a_clear_message(tmp_path: Path, spelling: str) -> None:
    state = tmp_path / "s.db"
    state.write_bytes(b"")
    (tmp_path / "sub").mkdir()
    other = {
        "same": state,
        "symlink": tmp_path / "alias.db",
        "dotted": tmp_path / "sub" / ".." / "s.db",
    }[spelling]
    if spelling == "symlink":
        other.symlink_to(state)
    with held_elsewhere("run_lock", state) as pid:
        with pytest.raises(StateLocked) as caught, run_lock(other):
            pass
        assert str(other) in str(caught.value) and f"pid {pid}" in str(caught.value)
    with run_lock(state):  # the kernel released it with the process
        pass


def test_a_hard_link_to_a_state_in_use_takes_the_same_lock(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    state.write_bytes(b"")
    linked = tmp_path / "linked.db"
    os.link(state, linked)
    with held_elsewhere("state_file_lock", state):
        refused = pytest.raises(StateLocked, match="by another path to the same file")
        with refused, run_lock(linked), state_file_lock(linked):  # its own lock file is free
            pass
    with state_file_lock(linked):
        pass
