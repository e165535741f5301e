"""A real PostgreSQL server for the tests, in a temporary folder.

``initdb`` and ``pg_ctl`` from the server binaries make a throwaway cluster that
listens only on a Unix socket in its own folder, trusts local connections and
skips fsync. PostgreSQL refuses to run as root, so under root (as in CI) the
binaries run as the ``postgres`` user through ``runuser``, in a folder that user
owns. Each pytest-xdist worker gets its own server, folder and socket.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

PG_USER = "postgres"
PORT = 5432  # Only names the socket file: every server has a socket folder of its own.
TIMEOUT = 60  # seconds for initdb and for pg_ctl to start or stop the server

# Settings for a disposable test server: no durability, no TCP, room for parallel tests.
SETTINGS = {
    "listen_addresses": "''",
    "port": str(PORT),
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "unix_socket_permissions": "0777",
}

INSTALL_SERVER = "apt-get install -y postgresql (.ci/run does)"
INSTALL_PSYCOPG = "pip install 'psycopg[binary]>=3.1' (or pip install '.[test]')"

# Taken at import, before the suite's autouse fixture points TMPDIR into pytest's
# basetemp, whose 0700 folders the postgres user could not enter.
_TMP_ROOT = tempfile.gettempdir()


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's layout."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    versions = glob.glob("/usr/lib/postgresql/*/bin/initdb") + glob.glob(
        "/usr/local/pgsql/bin/initdb"
    )
    for initdb in sorted(versions, key=_version_key, reverse=True):
        if Path(initdb).with_name("pg_ctl").exists():
            return Path(initdb).parent
    return None


def _version_key(path: str) -> tuple[int, str]:
    # /usr/lib/postgresql/15/bin/initdb: prefer the newest major version.
    part = Path(path).parent.parent.name
    return (int(part), path) if part.isdigit() else (0, path)


def unavailable_reason() -> str | None:
    """Why no server can be started here, with what to install; None when one can."""
    if importlib.util.find_spec("psycopg") is None:
        return f"psycopg is not installed: {INSTALL_PSYCOPG}"
    if find_bindir() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
            f"/usr/lib/postgresql/*/bin: {INSTALL_SERVER}"
        )
    if os.geteuid() == 0:
        return _root_reason()
    return None


def _root_reason() -> str | None:
    if shutil.which("runuser") is None:
        return "running as root, PostgreSQL must run as another user, and runuser is missing"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return (
            f"running as root, PostgreSQL must run as the '{PG_USER}' user, which does "
            f"not exist: {INSTALL_SERVER} creates it"
        )
    return None


class PgServer:
    """A throwaway PostgreSQL cluster: ``init()`` once, then ``start()``/``stop()`` at will.

    Use it as a context manager; leaving it stops the server and deletes the folder.
    """

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log = root / "server.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """The maintenance database ``postgres``, as a superuser, over the socket."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{PG_USER}@/{dbname}?host={self.socket_dir}&port={PORT}"

    def init(self) -> None:
        """Create the cluster (``initdb``) and write the test settings into it."""
        self.socket_dir.mkdir(mode=0o777)
        self.socket_dir.chmod(0o777)  # mkdir's mode is cut by the umask
        if self._as_postgres:
            self._give_to_postgres()
        self._run(
            "initdb",
            *("-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C"),
            *("--no-sync", "--no-instructions"),  # speed; a crash loses nothing a test needs
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# tests/pg.py\n")
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())

    def _give_to_postgres(self) -> None:
        # initdb makes the data folder itself but must be able to reach and write its parent.
        user = pwd.getpwnam(PG_USER)
        for path in (self.root, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)

    @property
    def running(self) -> bool:
        """Asked of ``pg_ctl status`` each time: a test may have killed the server."""
        return self._pg_ctl("status", check=False) == 0

    def start(self) -> None:
        """Start the server on the same data and socket; wait until it accepts connections.
        Does nothing when it is already running."""
        if self.running:
            return
        try:
            self._pg_ctl("start", "-l", str(self.log), "-w", "-t", str(TIMEOUT))
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{self._log_tail()}") from None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast``): open connections are cut.
        Does nothing when it is not running."""
        if self.running:
            self._pg_ctl("stop", "-m", mode, "-w", "-t", str(TIMEOUT))

    def create_database(self) -> str:
        """A new empty database with a unique name; returns its connection string."""
        import psycopg
        from psycopg import sql

        name = "test_" + secrets.token_hex(6)
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def ping(self) -> None:
        """Connect and run ``SELECT 1``: the URL really reaches the server."""
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as conn:
            row = conn.execute("SELECT 1").fetchone()
        assert row == (1,), row

    def close(self) -> None:
        """Stop the server at once and delete its folder."""
        try:
            if self.data.exists():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> int:
        return self._run("pg_ctl", action, "-D", str(self.data), *args, check=check)

    def _run(self, tool: str, *args: str, check: bool = True) -> int:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", PG_USER, "--", *command]
        # cwd: the postgres user may not be able to enter the test's own folder.
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=TIMEOUT + 30
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.returncode

    def _log_tail(self) -> str:
        try:
            return "".join(self.log.read_text(encoding="utf-8").splitlines(True)[-20:])
        except OSError:
            return "(no log)"


def start_server() -> PgServer:
    """Make, start and ping a server in a new temporary folder (callers check
    ``unavailable_reason()`` first)."""
    bindir = find_bindir()
    assert bindir is not None, "call unavailable_reason() first"
    server = PgServer(bindir, Path(tempfile.mkdtemp(prefix="hifly-pg-", dir=_socket_parent())))
    try:
        server.init()
        server.start()
        server.ping()
    except BaseException:
        server.close()
        raise
    return server


def _socket_parent() -> str:
    # A Unix socket path holds at most ~107 bytes: a long TMPDIR (macOS) falls back to /tmp.
    return _TMP_ROOT if len(_TMP_ROOT) < 60 else "/tmp"
