"""A thread that polls the database server's sessions and records overlapping runs.

Every run of a trial registers its processes with a :class:`Registry`; a session is the run's
when its client port belongs to one of them. The monitor polls pg_stat_activity (PostgreSQL) or
information_schema.PROCESSLIST (MariaDB) at ``hz`` and, per database, collects the runs whose
migrate process has a backend doing migration work. Two runs at once on one database is an
overlap: the thing the migration lock exists to prevent.

Only the migrate process's sessions count (the sidecar only holds the lock), and only migration
work: a statement that is not Lockstep's own bookkeeping of locks and sessions (the fence reads
pg_stat_activity and terminates backends; that is how it keeps runs apart), or, on PostgreSQL, an
open transaction that has written something.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
import pymysql
from sqlalchemy.engine import make_url

from faultinject import ports

# Statements about locks and sessions, not about the schema: the lock, the fence, liveness.
_HOUSEKEEPING = re.compile(
    r"pg_stat_activity|pg_terminate_backend|pg_cancel_backend|advisory|processlist|"
    r"_lock\s*\(|^\s*kill\b|set_config|current_setting|pg_backend_pid|connection_id\s*\(|"
    r"^\s*select\s+1\s*;?\s*$|^\s*(set|show)\s",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Owner:
    """Who opened a session: a run of a trial, and which of its processes."""

    run: str  # unique per run, e.g. "pg-sql/lane0/t12/r1"
    role: str  # "migrate" or "sidecar"


@dataclass(frozen=True)
class Session:
    backend: int
    database: str
    port: int | None
    working: bool
    statement: str


@dataclass
class Overlap:
    """Two or more runs doing migration work on one database in the same poll."""

    database: str
    runs: tuple[str, ...]
    first_seen: float
    last_seen: float
    samples: int
    statements: list[str]


class Registry:
    """Live processes of the runs, and the client ports seen on them (port -> owner)."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self._lock = threading.Lock()
        self._processes: dict[int, Owner] = {}
        self._ports: dict[int, Owner] = {}

    def track(self, pid: int, owner: Owner) -> None:
        with self._lock:
            self._processes[pid] = owner
        self.scan()

    def untrack(self, pid: int) -> None:
        with self._lock:
            self._processes.pop(pid, None)

    def scan(self) -> None:
        """Map the ports the tracked processes hold now (called before every kill, too)."""
        with self._lock:
            tracked = list(self._processes.items())
        found: dict[int, Owner] = {}
        for pid, owner in tracked:
            for port in ports.client_ports(ports.descendants(pid), self.server_port):
                found[port] = owner
        with self._lock:
            self._ports.update(found)

    def owner(self, port: int | None) -> Owner | None:
        if port is None:
            return None
        with self._lock:
            return self._ports.get(port)


@dataclass
class PollStats:
    polls: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None
    longest_gap: float = 0.0
    unattributed: set[int] = field(default_factory=set)

    def rate(self) -> float:
        end = time.monotonic() if self.stopped is None else self.stopped
        return self.polls / max(end - self.started, 1e-9)


class SessionMonitor(threading.Thread):
    """Polls one server; ``overlaps`` holds what it saw. Use as a context manager."""

    def __init__(self, admin_url: str, registry: Registry, databases: Iterable[str], hz: float):
        super().__init__(name="faultinject-monitor", daemon=True)
        self.url = make_url(admin_url)
        self.family = "postgresql" if self.url.get_backend_name() == "postgresql" else "mysql"
        self.registry = registry
        self.databases = sorted(databases)
        self.interval = 1.0 / hz
        self.overlaps: dict[tuple[str, tuple[str, ...]], Overlap] = {}
        self.stats = PollStats()
        self.error: BaseException | None = None
        self._finished = threading.Event()

    def __enter__(self) -> SessionMonitor:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._finished.set()
        self.join(timeout=10)

    def run(self) -> None:
        self.stats.started = time.monotonic()
        try:
            with self._connect() as connection:
                last = time.monotonic()
                while not self._finished.is_set():
                    self._record(self._sessions(connection))
                    now = time.monotonic()
                    self.stats.polls += 1
                    self.stats.longest_gap = max(self.stats.longest_gap, now - last)
                    last = now
                    self._finished.wait(max(0.0, self.interval - (time.monotonic() - now)))
        except BaseException as error:  # noqa: BLE001 - reported by the test, not lost
            self.error = error
        finally:
            self.stats.stopped = time.monotonic()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]] | pymysql.Connection:
        url = self.url
        if self.family == "postgresql":
            return psycopg.connect(
                host=url.host, port=url.port, user=url.username, password=url.password,
                dbname=url.database or "postgres", autocommit=True,
                application_name="faultinject-monitor",
            )  # fmt: skip
        return pymysql.connect(
            host=url.host, port=url.port or 3306, user=url.username,
            password=url.password or "", autocommit=True,
        )  # fmt: skip

    def _sessions(self, connection: object) -> list[Session]:
        if self.family == "postgresql":
            assert isinstance(connection, psycopg.Connection)
            rows = connection.execute(
                "SELECT pid, datname, client_port, state, backend_xid IS NOT NULL, "
                "left(query, 300) FROM pg_stat_activity WHERE datname = ANY(%s) "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (self.databases,),
            ).fetchall()
            return [_pg_session(*row) for row in rows]
        assert isinstance(connection, pymysql.Connection)
        marks = ", ".join(["%s"] * len(self.databases))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ID, DB, HOST, COMMAND, LEFT(INFO, 300) FROM information_schema.PROCESSLIST "
                f"WHERE DB IN ({marks}) AND ID <> CONNECTION_ID()",
                self.databases,
            )
            return [_mysql_session(*row) for row in cursor.fetchall()]

    def _record(self, sessions: Sequence[Session]) -> None:
        if any(self.registry.owner(s.port) is None for s in sessions):
            self.registry.scan()  # a new connection: find whose it is while its process lives
        working: dict[str, dict[str, list[str]]] = {}
        for session in sessions:
            owner = self.registry.owner(session.port)
            if owner is None:
                self.stats.unattributed.add(session.backend)
                continue
            if owner.role != "migrate" or not session.working:
                continue
            working.setdefault(session.database, {}).setdefault(owner.run, []).append(
                f"{owner.run} backend {session.backend}: {session.statement}"
            )
        now = time.monotonic()
        for database, runs in working.items():
            if len(runs) < 2:
                continue
            key = (database, tuple(sorted(runs)))
            overlap = self.overlaps.get(key)
            if overlap is None:
                statements = [line for lines in runs.values() for line in lines]
                self.overlaps[key] = Overlap(database, key[1], now, now, 1, statements)
            else:
                overlap.last_seen, overlap.samples = now, overlap.samples + 1


def _pg_session(
    backend: int, database: str, port: int | None, state: str | None, writes: bool, query: str
) -> Session:
    statement = " ".join((query or "").split())
    active = state == "active" and not _HOUSEKEEPING.search(statement)
    open_writes = (state or "").startswith("idle in transaction") and writes
    return Session(backend, database, port, active or open_writes, statement)


def _mysql_session(
    backend: int, database: str, host: str, command: str, info: str | None
) -> Session:
    port = int(host.rsplit(":", 1)[1]) if host and ":" in host else None
    statement = " ".join((info or "").split())
    executing = command in ("Query", "Execute", "Killed") and bool(statement)
    return Session(
        backend, database, port, executing and not _HOUSEKEEPING.search(statement), statement
    )
