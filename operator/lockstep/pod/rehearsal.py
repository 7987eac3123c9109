"""Shadow rehearsal: run the migration on a disposable database before the real one.

``lockstep run --shadow-url-env NAME`` first empties the database whose URL
is in ``$NAME`` (the *shadow*), then moves it through the migration with the
very same runner code that will then migrate the real database:

* upgrade (the run goes up from ``current`` to ``target``)::

      1. upgrade to target    2. downgrade to current    3. upgrade to target

* downgrade (the run goes down from ``current`` to ``target``)::

      1. upgrade to current   2. downgrade to target
      3. upgrade to current   4. downgrade to target

So the migration is known to apply on an empty database, to be reversible,
and to apply again after being reverted: a broken undo file shows up here,
not in production half-way through a rollback.  Any failing step stops the run
with :class:`RehearsalFailed` before the real database is touched.  Going
back down to ``current`` needs undo files (U files, or Alembic
``downgrade()``) for the migrations being applied: a source without them
cannot be rehearsed.

The shadow is held under its own migration lock for the whole rehearsal (two
runs sharing a shadow take turns), and it must never be the real database:
resetting drops everything in it.  That is checked twice, from the URLs and
from what the servers say about themselves (host aliases, port forwards).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import database, errors, url_secrets
from lockstep.database import DatabaseIdentity, Family
from lockstep.pod import lock, run_session, runner
from lockstep.pod.plan_model import PendingWork
from lockstep.pod.run_request import RunRequest
from lockstep.pod.runner import CheckContext

log = logging.getLogger("lockstep.rehearsal")

_SHADOW: Final = "the shadow database"
_UNTOUCHED: Final = "the real database was not touched"


class RehearsalFailed(errors.LockstepError):
    """The migration failed on the shadow database; the real one was left alone."""

    reason = "RehearsalFailed"


@dataclass(frozen=True)
class Step:
    action: Literal["upgrade", "downgrade"]
    revision: str | None  # None: nothing applied (base)

    def describe(self) -> str:
        return f"{self.action} to {self.revision or 'base'}"


def rehearsal_steps(pending: PendingWork) -> tuple[Step, ...]:
    """The moves that prove the pending migration both ways (see the module docstring)."""
    current, target = pending.current, pending.target
    if pending.direction == "down":
        return (
            Step("upgrade", current),
            Step("downgrade", target),
            Step("upgrade", current),
            Step("downgrade", target),
        )
    return (Step("upgrade", target), Step("downgrade", current), Step("upgrade", target))


# --------------------------------------------------------------------------- the run's check


def rehearsal_check(shadow_url: str, real_url: str) -> runner.Check:
    """A check for :func:`lockstep.pod.runner.run` that rehearses on ``shadow_url`` first.

    The URLs are compared at once, before the run queues for the lock.
    """
    refuse_same_database(real_url, shadow_url)

    def check(context: CheckContext) -> Mapping[str, Any]:
        return rehearse(context, shadow_url)

    return check


def rehearse(context: CheckContext, shadow_url: str) -> Mapping[str, Any]:
    """Reset the shadow and run the rehearsal steps on it; the result's ``rehearsal`` field."""
    if context.pending.direction == "none":
        log.info("nothing to apply: no rehearsal needed")
        return {"rehearsal": {"skipped": "nothing to apply"}}
    started = time.monotonic()
    request = context.request
    _refuse_same_server(request.database_url, shadow_url)
    steps = rehearsal_steps(context.pending)
    urls = (shadow_url, request.database_url)
    with (
        _failing_as_rehearsal(f"rehearsal: locking {_SHADOW}", urls),
        _shadow_lock(shadow_url, request.lock_wait_seconds),
    ):
        with _failing_as_rehearsal(f"rehearsal: resetting {_SHADOW}", urls):
            reset_database(shadow_url)
        for number, step in enumerate(steps, start=1):
            _run_step(request, shadow_url, step, f"rehearsal step {number} of {len(steps)}")
    seconds = round(time.monotonic() - started, 3)
    log.info("rehearsal passed in %.1fs: %s", seconds, ", ".join(s.describe() for s in steps))
    return {"rehearsal": {"steps": [s.describe() for s in steps], "durationSeconds": seconds}}


def _run_step(request: RunRequest, shadow_url: str, step: Step, label: str) -> None:
    """One move of the shadow, by the same runner (and so the same code) as the real run."""
    what = f"{label} ({step.describe()} on {_SHADOW})"
    log.info("%s", what)
    shadow_request = dataclasses.replace(
        request,
        database_url=shadow_url,
        target=step.revision or "base",
        allow_downgrade=step.action == "downgrade",
        take_lock=False,  # held by the rehearsal for all its steps
    )
    with _failing_as_rehearsal(what, (shadow_url, request.database_url)):
        runner.run(shadow_request)


@contextlib.contextmanager
def _failing_as_rehearsal(what: str, urls: Sequence[str]) -> Iterator[None]:
    """Report any failure inside as :class:`RehearsalFailed`, naming ``what`` failed."""
    try:
        yield
    except RehearsalFailed:
        raise
    except (errors.LockstepError, exc.SQLAlchemyError) as error:
        detail = (
            str(error)
            if isinstance(error, errors.LockstepError)
            else run_session.db_error_text(error, urls[0])
        )
        message = f"{what} failed: {detail.rstrip('.')}; {_UNTOUCHED}"
        raise RehearsalFailed(_scrub(message, urls)) from None


def _scrub(text: str, urls: Sequence[str]) -> str:
    for url in urls:
        text = url_secrets.scrub(text, url)
    return text


@contextlib.contextmanager
def _shadow_lock(shadow_url: str, wait_seconds: float) -> Iterator[None]:
    identity = database.identity_from_url(shadow_url)
    engine = database.make_engine(shadow_url)
    try:
        with (
            database.connect(engine, shadow_url) as connection,
            lock.hold_advisory_lock(connection, identity, wait_seconds),
        ):
            yield
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- same database?


def refuse_same_database(real_url: str, shadow_url: str) -> None:
    """Refuse a shadow that is (or cannot be told apart from) the real database.

    Resetting the shadow drops everything in it; pointed at the real database
    by mistake, that would be the worst possible outcome of a safety feature.
    """
    real = database.identity_from_url(real_url)
    try:
        shadow = database.identity_from_url(shadow_url)
    except errors.InvalidDatabaseUrl as error:
        raise errors.InvalidRequest(f"the shadow database URL is not usable: {error}") from None
    if shadow.family != real.family:
        raise errors.InvalidRequest(
            f"the shadow database is a {shadow.engine} database and the real one a {real.engine} "
            f"database: a rehearsal only proves something on the same engine; point the shadow "
            f"URL at a disposable {real.engine} database"
        )
    if shadow.database == ":memory:":
        raise errors.InvalidRequest(
            "the shadow database is an in-memory SQLite database, which lasts one connection "
            "only; point the shadow URL at a file"
        )
    if _same_place(real, shadow):
        raise _is_the_real_database(real)


def _same_place(real: DatabaseIdentity, shadow: DatabaseIdentity) -> bool:
    if real.family == "sqlite":
        real_path, shadow_path = Path(real.database), Path(shadow.database)
        if real_path.exists() and shadow_path.exists():
            return real_path.samefile(shadow_path)  # hard links too
        return real_path.resolve() == shadow_path.resolve()
    return (real.host, real.port, real.database) == (shadow.host, shadow.port, shadow.database)


def _is_the_real_database(real: DatabaseIdentity) -> errors.InvalidRequest:
    return errors.InvalidRequest(
        f"the shadow database is the database being migrated ({real}): a rehearsal first "
        f"drops everything in the shadow database, so it must be a separate, disposable "
        f"database; point the shadow URL at another database. Nothing was changed."
    )


def _refuse_same_server(real_url: str, shadow_url: str) -> None:
    """The servers' own view: catches one database reached under two host names."""
    with _failing_as_rehearsal(f"rehearsal: reading {_SHADOW}", (shadow_url, real_url)):
        shadow = _fingerprint(shadow_url)
    real = _fingerprint(real_url)
    if shadow is not None and shadow == real:
        raise _is_the_real_database(database.identity_from_url(real_url))


_FINGERPRINTS: Final[Mapping[Family, str]] = {
    # One server started at one microsecond, one database in it.
    "postgresql": "SELECT current_database(), CAST(pg_postmaster_start_time() AS text)",
    "mysql": "SELECT DATABASE(), @@hostname, @@port, @@datadir",
}


def _fingerprint(url: str) -> tuple[str, ...] | None:
    """What tells this database apart from any other; None for SQLite (its path does)."""
    query = _FINGERPRINTS.get(database.identity_from_url(url).family)
    if query is None:
        return None
    engine = database.make_engine(url)
    try:
        with database.connect(engine, url) as connection:
            row = connection.execute(sa.text(query)).one()
    finally:
        engine.dispose()
    return tuple(str(value) for value in row)


# --------------------------------------------------------------------------- reset


def reset_database(url: str) -> None:
    """Drop everything in the database at ``url``: only ever call it on a shadow."""
    identity = database.identity_from_url(url)
    log.info("resetting %s (the shadow database)", identity)
    engine = database.make_engine(url)
    try:
        with database.connect(engine, url) as connection:
            _RESETS[identity.family](connection)
    finally:
        engine.dispose()


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote_identifier(name)


def _drop(connection: sa.Connection, statement: str) -> None:
    connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


def _reset_postgresql(connection: sa.Connection) -> None:
    """Every schema but the system ones goes, then an empty ``public`` comes back."""
    with connection.begin():
        schemas = connection.execute(
            sa.text(
                "SELECT nspname FROM pg_namespace "
                "WHERE nspname <> 'information_schema' AND left(nspname, 3) <> 'pg_'"
            )
        ).scalars()
        for schema in list(schemas):
            _drop(connection, f"DROP SCHEMA {_quote(connection, schema)} CASCADE")
        _drop(connection, "CREATE SCHEMA public")


_MYSQL_DROP_ORDER: Final = ("VIEW", "SEQUENCE", "TABLE", "PROCEDURE", "FUNCTION")


def _reset_mysql(connection: sa.Connection) -> None:
    """Views, tables (and MariaDB sequences), procedures and functions of the database.

    Foreign key checks are off for the session, so tables go in any order.
    """
    connection.execution_options(isolation_level="AUTOCOMMIT")  # DDL commits anyway
    tables = connection.execute(
        sa.text(
            "SELECT CASE TABLE_TYPE WHEN 'VIEW' THEN 'VIEW' WHEN 'SEQUENCE' THEN 'SEQUENCE' "
            "ELSE 'TABLE' END, TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()"
        )
    ).all()
    routines = connection.execute(
        sa.text(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE()"
        )
    ).all()
    connection.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0")
    for kind, name in sorted([*tables, *routines], key=lambda row: _MYSQL_DROP_ORDER.index(row[0])):
        _drop(connection, f"DROP {kind} IF EXISTS {_quote(connection, name)}")
    connection.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1")


_SQLITE_DROP_ORDER: Final = ("trigger", "view", "index", "table")


def _reset_sqlite(connection: sa.Connection) -> None:
    """Triggers, views, indexes and tables (SQLite's own ``sqlite_*`` tables stay)."""
    with connection.begin():
        objects = connection.execute(
            sa.text(
                "SELECT type, name FROM sqlite_master "
                "WHERE substr(name, 1, 7) <> 'sqlite_' AND type IN "
                "('trigger', 'view', 'index', 'table')"
            )
        ).all()
        for kind, name in sorted(objects, key=lambda row: _SQLITE_DROP_ORDER.index(row[0])):
            _drop(connection, f"DROP {kind.upper()} IF EXISTS {_quote(connection, name)}")


_RESETS: Final[Mapping[Family, Callable[[sa.Connection], None]]] = {
    "postgresql": _reset_postgresql,
    "mysql": _reset_mysql,
    "sqlite": _reset_sqlite,
}
