"""State store benchmark: one campaign run twice, its state in an SQLite file, then in PostgreSQL.

The campaign is ``bench_run.py throughput``'s: ``--items`` videos (default
10,000) of instant tasks at concurrency 16 on a sandbox served from another
process. It runs once with the default state (an SQLite file beside the
manifest) and once with ``--state postgresql://...`` on a PostgreSQL server
this script starts itself in a temporary folder (``tests/pg.py``: a Unix
socket, fsync and synchronous_commit off). Each run has a fresh folder and a
fresh sandbox; both folders stay until the end, so the second run does not
write its outputs where the first one's were just deleted.

For each run: wall seconds, the runner's CPU seconds per item (user + sys from
``wait4`` on the CLI's process alone: not the sandbox, not the PostgreSQL
server, which are other processes), its peak RSS and its exit code. Target,
in the same invocation: PostgreSQL CPU per item <= 2x SQLite CPU per item.

How statements are counted: the benchmark's database gets ``log_statement =
all`` (``ALTER DATABASE ... SET``, so only sessions on it log: the run's own;
this script watches from the ``postgres`` database). Every statement the server
executes for the run is one log line, ``statement: ...`` (simple protocol:
psycopg's BEGIN and COMMIT) or ``execute <name>: ...`` (extended protocol: each
execution, pipelined ``executemany`` rows included). They are counted from the
server log, by their first words; beside them, the database's transactions as
``pg_stat_database`` counts them (autovacuum's included).

How state changes are counted: a state change is one record written, and each
store counts its own. PostgreSQL: rows inserted + updated in ``hifly_items``
(``pg_stat_user_tables``), which is the denominator of statements per state
change. SQLite: ``total_changes`` of the runner's connections to its state
file, read when they close by a ``sitecustomize`` loaded into the runner in
both runs (it only gives the connections a ``close`` that notes the count,
nothing per statement; it hides any other ``sitecustomize``); it also counts
the 2 ``meta`` rows a run's claim writes. Both runs should show the same
number, give or take those: the same work was recorded.

The two runs differ in where the state goes: an SQLite file in WAL mode with
``synchronous=NORMAL`` on the campaign's disk, against a local server over a
Unix socket that also writes a line per statement to its log (the server's
cost, not the runner's). Figures come from the same invocation, the runs one
after the other: other load on the machine inflates CPU time too, and a change
of load between the two runs shows in the ratio.

    python tests/bench/bench_state.py [--items 10000] [--concurrency 16] [--dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench_run import Measured, existing_avatar, serve, stop, write_campaign  # noqa: E402

from tests import pg  # noqa: E402

TARGET = 2.0  # PostgreSQL CPU per item / SQLite CPU per item
SETTINGS = "  concurrency: {}\n  poll_interval: 0.05s\n  poll_max: 1s"
SANDBOX = ("--credits", "1000000000", "--task-seconds", "0", "--task-jitter", "0",
           "--max-generating", "1000000")  # fmt: skip

# Loaded into the runner (both runs): each sqlite3 connection notes its total_changes on
# close (and at exit, if still open) into the JSON file named by the variable.
SHIM = """\
import os

if os.environ.get("HIFLY_BENCH_SQLITE_CHANGES"):
    import atexit
    import json
    import sqlite3

    _connect = sqlite3.connect
    _changes = {}
    _open = []

    class _Counted(sqlite3.Connection):
        def close(self):
            _note(self)
            super().close()

    def _note(conn):
        try:
            changed = conn.total_changes
        except sqlite3.ProgrammingError:  # closed already
            return
        _changes[conn.bench_path] = _changes.get(conn.bench_path, 0) + changed

    def connect(database, *args, **kwargs):
        kwargs.setdefault("factory", _Counted)
        conn = _connect(database, *args, **kwargs)
        conn.bench_path = str(database)
        _open.append(conn)
        return conn

    @atexit.register
    def _write():
        for conn in _open:
            _note(conn)
        with open(os.environ["HIFLY_BENCH_SQLITE_CHANGES"], "w", encoding="utf-8") as out:
            json.dump(_changes, out)

    sqlite3.connect = connect
"""

LOGGED = re.compile(r" LOG:  (?:statement|execute [^:]*): (.*)$")


@dataclass
class Run:
    m: Measured
    sqlite_changes: int  # total_changes of the runner's connections to its state file


@dataclass
class Server:
    statements: Counter[str]  # by kind: upsert, BEGIN, COMMIT, other
    transactions: int
    rows_written: int  # inserted + updated in hifly_items
    version: str


def run_cli(manifest: Path, url: str, token: str, shim: Path, *options: str) -> Run:
    """The real CLI in its own process; CPU and RSS from ``wait4`` on that process."""
    changes = manifest.with_name("sqlite-changes.json")
    path = os.pathsep.join(filter(None, [str(shim), str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HIFLY_BASE_URL": url, "HIFLY_TOKEN": token, "PYTHONPATH": path,
           "HIFLY_BENCH_SQLITE_CHANGES": str(changes)}  # fmt: skip
    env.pop("HIFLY_STATE", None)  # the state is what this benchmark chooses
    command = [sys.executable, "-m", "hifly_batch", "-q", "run", "--no-progress", *options]
    started = time.perf_counter()
    proc = subprocess.Popen([*command, str(manifest)], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu, rss_mb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    m = Measured(wall, cpu, usage.ru_stime, rss_mb, proc.returncode)
    counted = json.loads(changes.read_text(encoding="utf-8")) if changes.exists() else {}
    return Run(m, sum(n for name, n in counted.items() if is_state_file(name, manifest)))


def is_state_file(database: str, manifest: Path) -> bool:
    """The default state file (``file:`` URI or path), not the one a new state is built in."""
    path = Path(database.removeprefix("file:").split("?")[0])
    return path.parent == manifest.parent / ".hifly" and not path.name.startswith(".")


def campaign_run(folder: Path, items: int, concurrency: int, shim: Path, *options: str) -> Run:
    """Serve a fresh sandbox, make the avatar, then run the campaign once through the CLI."""
    folder.mkdir()
    proc, url, token = serve(folder / "world", *SANDBOX)
    try:
        avatar = existing_avatar(url, token, folder)
        manifest = write_campaign(folder, items, avatar, SETTINGS.format(concurrency))
        return run_cli(manifest, url, token, shim, *options)
    finally:
        stop(proc)


def bench_database(server: pg.PgServer) -> str:
    """A new database whose sessions log every statement (without parameters)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.sql import SQL, Identifier

    url = server.create_database()
    name = Identifier(str(conninfo_to_dict(url)["dbname"]))
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(SQL("ALTER DATABASE {} SET log_statement = 'all'").format(name))
        conn.execute(SQL("ALTER DATABASE {} SET log_parameter_max_length = 0").format(name))
    return url


def server_counts(server: pg.PgServer, url: str, log_from: int) -> Server:
    """What the server counted for the run, once the run's sessions have ended."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    dbname = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(server.url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError("the run's database sessions did not end")
            time.sleep(0.05)
        version = conn.execute("SHOW server_version").fetchone()
        xacts = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
    with psycopg.connect(url, autocommit=True, options="-c log_statement=none") as conn:
        rows = conn.execute(
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'hifly_items'"
        ).fetchone()
    with server.log.open("rb") as log:
        log.seek(log_from)
        lines = log.read().decode("utf-8", "replace").splitlines()
    kinds: Counter[str] = Counter()
    for line in lines:
        if found := LOGGED.search(line):
            kinds[statement_kind(found.group(1))] += 1
    assert version and xacts and rows
    return Server(kinds, int(xacts[0]), int(rows[0]), str(version[0]))


def statement_kind(sql: str) -> str:
    words = sql.split()
    if words[:3] == ["INSERT", "INTO", "hifly_items"]:
        return "upsert"
    if words and words[0] in ("BEGIN", "COMMIT", "ROLLBACK"):
        return words[0]
    return "other (schema, claim, lock, reads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--dir", help="where the campaigns and outputs go (default: temp)")
    args = parser.parse_args()
    reason = pg.unavailable_reason()
    if reason is not None:
        sys.exit(f"bench_state: no PostgreSQL server can be started here: {reason}")
    n = args.items
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir)))
        shim = tmp / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(SHIM, encoding="utf-8")
        lite = campaign_run(tmp / "sqlite", n, args.concurrency, shim)
        server = stack.enter_context(pg.start_server())
        url = bench_database(server)
        log_from = server.log.stat().st_size
        post = campaign_run(tmp / "postgresql", n, args.concurrency, shim, "--state", url)
        counted = server_counts(server, url, log_from)

    kinds = counted.statements
    statements = sum(kinds.values())
    print(
        f"state stores: {n} videos, instant tasks, concurrency {args.concurrency}, "
        "the same campaign twice (SQLite first)"
    )
    print(f"{'':28}{'SQLite file':>14}{'PostgreSQL':>14}")
    print(f"  {'exit code':<26}{lite.m.code:>14}{post.m.code:>14}")
    print(f"  {'wall seconds':<26}{lite.m.wall:>14.1f}{post.m.wall:>14.1f}")
    per_item = [1000 * r.m.cpu / n for r in (lite, post)]
    print(f"  {'runner CPU per item (ms)':<26}{per_item[0]:>14.2f}{per_item[1]:>14.2f}")
    kernel = [1000 * r.m.sys_cpu / n for r in (lite, post)]
    print(f"  {'  of it in the kernel (ms)':<26}{kernel[0]:>14.2f}{kernel[1]:>14.2f}")
    print(f"  {'runner peak RSS (MB)':<26}{lite.m.max_rss_mb:>14.1f}{post.m.max_rss_mb:>14.1f}")
    print(f"  {'record writes':<26}{lite.sqlite_changes:>14}{counted.rows_written:>14}")
    print(
        "    (SQLite: total_changes of the runner's state connections, 2 meta rows "
        "included; PostgreSQL: rows inserted + updated in hifly_items, server's count)"
    )
    print(f"PostgreSQL {counted.version}, counted by the server during the run (log_statement):")
    parts = ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
    print(f"  statements                  : {statements:>8}   ({parts})")
    xacts = counted.transactions
    print(f"  transactions                : {xacts:>8}   (pg_stat_database, autovacuum's too)")
    per_change = statements / counted.rows_written if counted.rows_written else float("nan")
    print(f"  statements per state change : {per_change:8.2f}   (state change = record write)")
    ratio = per_item[1] / per_item[0] if per_item[0] else float("inf")
    print(f"  PG CPU/item / SQLite CPU/item: {ratio:7.2f}x   (target <= {TARGET:.1f})")
    print(
        "environment: SQLite file in WAL mode, synchronous=NORMAL, on the campaign's disk; "
        "PostgreSQL over a Unix socket, fsync and synchronous_commit off, a log line per "
        "statement (server-side)"
    )
    ok = lite.m.code == 0 and post.m.code == 0 and ratio <= TARGET
    print("verdict:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
