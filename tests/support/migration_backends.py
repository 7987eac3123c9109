"""Migration backends on real servers, for the fence's tests: zombies, watches, subprocesses.

A "zombie" is a migration backend whose client Lockstep no longer controls: it carries the
run's tag (docs/adr/0009-the-fence.md) and keeps executing a statement that sleeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lockstep import constants, database
from lockstep.pod import fence, run_request

TAG = constants.MIGRATION_APPLICATION_NAME


def family(url: str) -> str:
    return database.identity_from_url(url).family


def admin_engine(url: str) -> sa.Engine:
    return sa.create_engine(database.driver_url(url), poolclass=sa.pool.NullPool)


@dataclass
class Zombie:
    """A migration backend whose client is gone from Lockstep's view: it holds the run's tag
    and keeps executing ``sql`` (the last statement sleeps) in an open transaction."""

    url: str
    statements: list[str]
    backend_id: int = 0
    ended: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Zombie:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.started.wait(10), "the zombie backend did not start"
        time.sleep(0.3)  # let its last statement reach the server
        return self

    def _run(self) -> None:
        tagged = {"application_name": TAG} if family(self.url) == "postgresql" else {}
        engine = sa.create_engine(
            database.driver_url(self.url), poolclass=sa.pool.NullPool, connect_args=tagged
        )
        try:
            with engine.connect() as connection:
                if family(self.url) == "mysql":
                    connection.execution_options(isolation_level="AUTOCOMMIT")
                    identity = database.identity_from_url(self.url)
                    name = fence.run_lock_name(identity)
                    connection.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name})
                    self.backend_id = int(
                        connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
                    )
                else:
                    # psycopg opens the transaction with this first statement; it stays open.
                    self.backend_id = int(
                        connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                    )
                self.started.set()
                for statement in self.statements:
                    connection.exec_driver_sql(statement)
        except sa.exc.DBAPIError:
            pass  # ended by the fence: what the test wants
        finally:
            self.ended.set()
            engine.dispose()


def backend_alive(url: str, backend_id: int) -> bool:
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            if family(url) == "postgresql":
                query = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {backend_id}"
            else:
                query = (
                    f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {backend_id}"
                )
            return bool(connection.exec_driver_sql(query).scalar_one())
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = admin_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def write_source(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def request_for(url: str, source: Path) -> run_request.RunRequest:
    return run_request.RunRequest(
        tool="sql",
        source_dir=source,
        database_url=url,
        target="head",
        lock_wait_seconds=10,
        statement_lock_timeout="5s",
    )


def sleep_sql(url: str, seconds: int) -> str:
    """A statement that sleeps, and fails when cancelled (MySQL's bare ``SELECT SLEEP(n)``
    returns 1 instead of failing when its query is killed, so it sleeps inside a query)."""
    if family(url) == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    return f"SELECT SLEEP({seconds}) FROM information_schema.SCHEMATA LIMIT 1"


def lockstep(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "lockstep.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def migration_backends(url: str) -> list[tuple[int, str]]:
    """The tagged migration backends on this database: (id, what it runs)."""
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            if family(url) == "postgresql":
                rows = connection.execute(
                    sa.text(
                        "SELECT pid, query FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND application_name = :tag AND pid <> pg_backend_pid()"
                    ),
                    {"tag": TAG},
                ).all()
                return [(int(pid), str(query)) for pid, query in rows]
            name = fence.run_lock_name(database.identity_from_url(url))
            holder = connection.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
            if holder is None:
                return []
            info = connection.execute(
                sa.text("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = :id"),
                {"id": holder},
            ).scalar()
            return [(int(holder), str(info or ""))]
    finally:
        engine.dispose()


def queued_for_the_lock(url: str) -> bool:
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            if family(url) == "postgresql":
                query = (
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            else:
                query = (
                    "SELECT count(*) FROM information_schema.PROCESSLIST "
                    "WHERE INFO LIKE 'SELECT GET_LOCK(%%' AND INFO NOT LIKE '%%, 0)'"
                )
            return bool(connection.exec_driver_sql(query).scalar_one())
    finally:
        engine.dispose()


def sleeping(url: str) -> bool:
    return any("sleep" in query.lower() for _id, query in migration_backends(url))


@dataclass
class LockWatch:
    """Samples, many times a second, whether the migration lock is held and whether a migration
    backend is alive; a sample with the lock free and a backend alive is an overlap window."""

    url: str
    backend_id: int
    samples: list[tuple[bool, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> LockWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        identity = database.identity_from_url(self.url)
        engine = admin_engine(self.url)
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            while not self.stop.is_set():
                self.samples.append(
                    (self._lock_held(connection, identity), self._alive(connection))
                )
                time.sleep(0.02)
        engine.dispose()

    def _lock_held(self, connection: sa.Connection, identity: database.DatabaseIdentity) -> bool:
        if identity.family == "postgresql":
            key = database.advisory_lock_id(identity) & 0xFFFFFFFFFFFFFFFF
            return bool(
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) "
                        "AND objsubid = 1"
                    ),
                    {"high": key >> 32, "low": key & 0xFFFFFFFF},
                ).scalar_one()
            )
        name = database.advisory_lock_name(identity)
        return (
            connection.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar() is not None
        )

    def _alive(self, connection: sa.Connection) -> bool:
        if family(self.url) == "postgresql":
            query = "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
        else:
            query = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = :id"
        return bool(connection.execute(sa.text(query), {"id": self.backend_id}).scalar_one())
