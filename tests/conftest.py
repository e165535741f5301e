"""Fixtures shared by the whole suite.

Two guards run around every test: it starts in its own empty folder with no
HIFLY_* variables (so nothing can reach the user's state or send a real
token), and nothing it prints or writes may contain the sandbox token.
Tests of the PostgreSQL state store get a real server (``pg_server``) and a
fresh database each (``pg_url``); end-to-end tests that take ``store`` run once
with the state in its file and once in a database (``HIFLY_STATE``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hifly_batch.sandbox import Sandbox, SandboxConfig
from tests import pg

# Every sandbox in the suite uses this token, so the scans below can look for it.
SECRET_TOKEN = "hf-test-" + secrets.token_hex(12)
FAST = SandboxConfig(task_seconds=0.05, task_jitter=0.02, token=SECRET_TOKEN)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the tests that press it. A suite started in the background by a
    script (``pytest &``) inherits SIGINT ignored, as would every command it runs, and a
    program started with a signal ignored rightly keeps ignoring it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An empty working folder, temporary files (crash logs included) where the token scan
    looks, and no HIFLY_* variables from the developer's shell."""
    for name in ("HIFLY_TOKEN", "HIFLY_BASE_URL", "HIFLY_STATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    scratch = tmp_path_factory.mktemp("tmp")
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A running sandbox with fast tasks, its world in this test's folder."""
    with Sandbox(tmp_path / "world", FAST) as running:
        yield running


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    """A real PostgreSQL server, one per xdist worker (session scope is per worker).
    Skipped, saying what to install, where psycopg or the server binaries are missing."""
    reason = pg.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with pg.start_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: pg.PgServer) -> str:
    """The connection string of a new, empty database on the running server."""
    pg_server.start()  # an earlier test may have stopped it
    return pg_server.create_database()


@dataclass
class Store:
    """Where the CLI runs of a test keep the campaign's state: ``file`` (the default,
    ``.hifly/`` beside the manifest) or ``postgresql`` (a database of its own, named to
    every run by ``HIFLY_STATE``)."""

    kind: str
    monkeypatch: pytest.MonkeyPatch
    server: pg.PgServer | None = None

    @property
    def in_database(self) -> bool:
        return self.kind == "postgresql"

    @property
    def url(self) -> str | None:
        """The database the runs use now; None for the file."""
        return os.environ.get("HIFLY_STATE") if self.in_database else None

    def new_database(self) -> str:
        """Point later runs at a new, empty database (another machine's, or a state
        lost); returns its URL. Only for the ``postgresql`` store."""
        assert self.server is not None, "the file store has no database"
        url = self.server.create_database()
        self.monkeypatch.setenv("HIFLY_STATE", url)
        return url

    def lose(self, root: Path) -> None:
        """Lose the state of the campaign beside ``root``'s manifest, as a new machine
        has none: ``.hifly/`` goes (the file, or only the run locks beside it), and the
        runs go on with a new, empty database."""
        shutil.rmtree(root / ".hifly")
        if self.in_database:
            self.new_database()


@pytest.fixture(params=["file", "postgresql"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The state store the CLI runs of the test use. ``postgresql`` asks for a database
    only when it runs, so a run of the file variants alone starts no server."""
    if request.param == "file":
        return Store("file", monkeypatch)
    monkeypatch.setenv("HIFLY_STATE", request.getfixturevalue("pg_url"))
    return Store("postgresql", monkeypatch, request.getfixturevalue("pg_server"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Fail a test whose captured output or logs show the token."""
    report = yield
    leaked = [name for name, text in report.sections if SECRET_TOKEN in text]
    if call.excinfo is not None and SECRET_TOKEN in str(call.excinfo.value):
        leaked.append("exception message")
    if leaked and not report.failed:
        report.outcome = "failed"
        report.longrepr = f"the sandbox token appeared in: {', '.join(leaked)}"
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the suite: no file any test wrote holds the token, except sandbox worlds."""
    basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    leaks = [str(p) for p in _written_files(basetemp) if _holds_token(p)]
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nthe sandbox token was written to:\n  " + "\n  ".join(leaks))


def _written_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        # The sandbox's own database must keep the token to check requests.
        if path.is_file() and not path.name.startswith("world.db"):
            yield path


def _holds_token(path: Path) -> bool:
    try:
        return SECRET_TOKEN.encode() in path.read_bytes()
    except OSError:
        return False
