"""Database URLs, identities and engines.

A database URL carries a password, so it never reaches a log line or an
exception message as is: everything here that reports a URL reports
:func:`lockstep.url_secrets.redact_url` of it, and :class:`DatabaseIdentity` holds no credentials
at all.

Its errors (:class:`lockstep.errors.InvalidDatabaseUrl`,
:class:`lockstep.errors.DatabaseUnavailable`) live in :mod:`lockstep.errors`,
free of any driver, so pure modules can name them.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc, pool
from sqlalchemy.engine import URL, Engine, make_url

from lockstep import db_identity, errors, url_secrets
from lockstep.db_identity import DEFAULT_PORTS as DEFAULT_PORTS
from lockstep.db_identity import ENGINES as ENGINES
from lockstep.db_identity import DatabaseIdentity as DatabaseIdentity
from lockstep.db_identity import EngineName as EngineName
from lockstep.db_identity import Family as Family
from lockstep.db_identity import advisory_lock_id as advisory_lock_id
from lockstep.db_identity import advisory_lock_name as advisory_lock_name
from lockstep.db_identity import database_key as database_key
from lockstep.db_identity import family_of as family_of

CONNECT_TIMEOUT_SECONDS: Final = 10
ACCEPTED_URL_FORMS: Final = (
    "postgresql://user:password@host:5432/db (also postgres://, postgresql+psycopg://), "
    "mysql://user:password@host:3306/db (also mysql+pymysql://), "
    "mariadb://user:password@host:3306/db, sqlite:///path/to/file.db"
)
# Drivers Lockstep ships: whatever driver a URL names, it is served by these.
_DRIVERS: Final[dict[Family, str]] = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "sqlite": "sqlite+pysqlite",
}
_SCHEMES: Final[dict[str, EngineName]] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
}


# --------------------------------------------------------------------------- identity


def parse_url(url: str) -> URL:
    """``url`` parsed by SQLAlchemy, its password read whole; errors show none of it."""
    try:
        return make_url(url_secrets.encode_stray_delimiters(url))
    except (exc.ArgumentError, ValueError):
        # SQLAlchemy's message quotes the whole URL, password included; and a
        # string that is no URL at all may be a bare password: show neither.
        scheme = url_secrets.scheme_of(url)
        shown = f"(scheme {scheme!r}, rest not shown)" if scheme else url_secrets.NOT_SHOWN
        raise errors.InvalidDatabaseUrl(
            f"cannot parse the database URL {shown}; expected one of: {ACCEPTED_URL_FORMS}"
        ) from None


def _engine_of(parsed: URL, url: str) -> EngineName:
    scheme = parsed.drivername.split("+", 1)[0].lower()
    engine = _SCHEMES.get(scheme)
    if engine is None:
        raise errors.InvalidDatabaseUrl(
            f"unsupported database URL scheme {scheme!r} in {url_secrets.redact_url(url)!r}; "
            f"expected one of: {ACCEPTED_URL_FORMS}"
        )
    return engine


def identity_from_url(url: str) -> DatabaseIdentity:
    """Parse ``url`` into a :class:`DatabaseIdentity` (raises :class:`InvalidDatabaseUrl`)."""
    parsed = parse_url(url)
    engine = _engine_of(parsed, url)
    if engine == "sqlite":
        path = parsed.database or ":memory:"
        if path != ":memory:":
            path = str(Path(path).absolute())
        return DatabaseIdentity(engine="sqlite", host="", port=None, database=path)
    if not parsed.database:
        raise errors.InvalidDatabaseUrl(
            f"database URL {url_secrets.redact_url(url)!r} names no database; "
            "add it as the path, "
            f"e.g. {engine}://user:password@host/mydb"
        )
    return DatabaseIdentity(
        engine=engine,
        host=(parsed.host or "localhost").lower(),
        port=parsed.port or DEFAULT_PORTS[engine],
        database=parsed.database,
    )


# --------------------------------------------------------------------------- engines


def driver_url(url: str) -> URL:
    """``url`` rewritten to the driver Lockstep ships for its engine."""
    parsed = parse_url(url)
    family = family_of(_engine_of(parsed, url))
    driven = parsed.set(drivername=_DRIVERS[family])
    if family == "mysql" and "charset" not in driven.query:
        driven = driven.update_query_dict({"charset": "utf8mb4"})
    return driven


# Dead peers: TCP keepalive probes after 30 s of silence, every 10 s, 3 unanswered = gone. This
# bounds a migration statement on a server that vanished without bounding a long, healthy one.
KEEPALIVE_IDLE_SECONDS: Final = 30
KEEPALIVE_INTERVAL_SECONDS: Final = 10
KEEPALIVE_PROBES: Final = 3
WRITE_TIMEOUT_SECONDS: Final = 60
# An execution option: SQLite connections run without SQLAlchemy's BEGIN while it is true (a
# migration file that cannot run in a transaction, such as VACUUM).
NO_TRANSACTION: Final = "lockstep_no_transaction"


def _connect_args(family: Family, query_timeout_seconds: float | None) -> dict[str, Any]:
    """Bounds on every network wait: connecting (the handshake included), and reading a reply.

    PyMySQL's ``connect_timeout`` covers the TCP connect only; the server's greeting is read
    under ``read_timeout``, so the handshake gets the connect timeout as its read timeout and
    :func:`_bound_mysql_reads` sets the query's bound once connected.
    """
    if family == "postgresql":
        args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": "lockstep",
            "keepalives": 1,
            "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
            "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
            "keepalives_count": KEEPALIVE_PROBES,
        }
        if query_timeout_seconds is not None:
            args["options"] = f"-c statement_timeout={round(query_timeout_seconds * 1000)}"
        return args
    if family == "mysql":
        return {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": CONNECT_TIMEOUT_SECONDS,
            "write_timeout": CONNECT_TIMEOUT_SECONDS,
        }
    return {}


def _bound_mysql_reads(engine: Engine, query_timeout_seconds: float | None) -> None:
    """After the handshake: the query's read bound, a write bound, and keepalive probes."""

    @event.listens_for(engine, "connect")
    def _after_handshake(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._read_timeout = query_timeout_seconds  # PyMySQL has no setter
        dbapi_connection._write_timeout = WRITE_TIMEOUT_SECONDS
        sock = getattr(dbapi_connection, "_sock", None)
        if sock is not None and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_SECONDS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def make_engine(
    url: str, *, pooled: bool = False, query_timeout_seconds: float | None = None
) -> Engine:
    """A SQLAlchemy engine for ``url`` using the bundled drivers.

    The runner and the lock use the default ``pooled=False`` (NullPool): each
    connection is closed for real when returned, so session settings such as
    ``lock_timeout`` never leak and a lock's connection dies with its holder.
    Long-lived callers (the operator's version reader) pass ``pooled=True``.

    Connecting is always bounded (:data:`CONNECT_TIMEOUT_SECONDS`, the handshake included)
    and a vanished server is noticed by TCP keepalive. ``query_timeout_seconds`` bounds each
    query too: readers pass it; the runner does not, since a migration statement may
    rightly run for hours (the Job's deadline bounds it).
    """
    driven = driver_url(url)
    family = identity_from_url(url).family
    connect_args = _connect_args(family, query_timeout_seconds)
    if "options" in connect_args and "options" in driven.query:  # keep the URL's own options
        connect_args["options"] = f"{driven.query['options']} {connect_args['options']}"
    options: dict[str, Any] = {"connect_args": connect_args}
    if pooled and family != "sqlite":
        options.update(pool_size=2, max_overflow=2, pool_pre_ping=True, pool_recycle=300)
    else:
        options["poolclass"] = pool.NullPool
    engine = sa.create_engine(driven, **options)
    if family == "sqlite":
        _enable_sqlite_transactional_ddl(engine)
    if family == "mysql":
        _bound_mysql_reads(engine, query_timeout_seconds)
    return engine


def _enable_sqlite_transactional_ddl(engine: Engine) -> None:
    """Make ``BEGIN`` cover DDL on SQLite.

    Python's sqlite3 module only opens a transaction before DML, so a
    ``CREATE TABLE`` would commit on its own and a failed migration file could
    not be rolled back.  Taking transaction control away from the driver and
    emitting ``BEGIN`` ourselves is SQLAlchemy's documented remedy.
    """

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _explicit_begin(connection: sa.Connection) -> None:
        if not connection.get_execution_options().get(NO_TRANSACTION):
            connection.exec_driver_sql("BEGIN")


def connect(engine: Engine, url: str) -> sa.Connection:
    """Open a connection, turning driver failures into :class:`DatabaseUnavailable`."""
    try:
        return engine.connect()
    except exc.DBAPIError as error:
        raise db_identity.connect_failed(url, str(error.orig) if error.orig else "") from None
