"""The built-in migration runner: what ``lockstep run`` does inside a migration Job.

One run: check the source, take the database's migration lock (bounded wait),
bring the database to the target (up, or down when allowed), record what
happened, and return a :class:`RunResult` small enough for a container's
termination message.

Two tools are built in:

* ``sql``: versioned SQL files (see :mod:`lockstep.sqlfiles`), recorded in
  ``lockstep_schema_history``.  Each file runs in its own transaction where DDL
  is transactional (PostgreSQL, SQLite), so a failed file leaves no trace.
  MySQL/MariaDB commit every DDL statement on their own: there a file that
  fails part-way is recorded as failed and later runs refuse to continue until
  a person repairs the database (:class:`~lockstep.errors.PartiallyApplied` says how).
* ``alembic``: Alembic scripts through Alembic's Python API, on the connection
  Lockstep opened (the user's ``env.py`` picks it up from
  ``config.attributes["connection"]``; see :mod:`lockstep.tools.alembic`).

The parts live beside this module: :mod:`~lockstep.pod.run_request` (what is asked and
reported), :mod:`~lockstep.pod.run_session` (the lock, the connections, the database's errors),
:mod:`~lockstep.pod.sql_planning` and :mod:`~lockstep.pod.sql_execution` (tool ``sql``),
:mod:`~lockstep.pod.alembic_migration` (tool ``alembic``).  This module loads the source, reads
what is pending and runs the whole.

Checks may run between taking the lock and changing anything (see
:data:`Check`): :mod:`lockstep.pod.run_plan` verifies the approved plan,
:mod:`lockstep.pod.rehearsal` rehearses on a shadow database.  They live in their
own modules and are passed in, so this module knows nothing of plans.

Every error is a :class:`lockstep.errors.LockstepError` whose ``reason`` becomes the reason of
the DatabaseMigration's conditions, and whose message never holds a password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lockstep import database, errors
from lockstep.database import DatabaseIdentity
from lockstep.pod import graceful_stop, run_request, run_session

if TYPE_CHECKING:
    # Each tool's modules are imported where that tool uses them (issue 21): Alembic by tool
    # alembic only (importing it cost a SQL-only run a quarter of its start-up), the SQL files'
    # reader and planner by tool sql only. The plan's model (and the classifier it loads): only
    # for runs with checks.
    from alembic.script import ScriptDirectory

    from lockstep.pod.plan_model import PendingWork
    from lockstep.sqlfiles import Migration, MigrationSet, SqlFile

log = logging.getLogger("lockstep.runner")


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class SqlSource:
    """Versioned SQL files that loaded and passed their checks."""

    migration_set: MigrationSet
    target: str | None  # the version the request's target names; None: nothing applied


@dataclass(frozen=True)
class AlembicSource:
    """Alembic scripts that loaded and passed their checks (one head)."""

    directory: Path
    script: ScriptDirectory


Source = SqlSource | AlembicSource


@dataclass(frozen=True)
class CheckContext:
    """What a check before migrating may look at, while the migration lock is held."""

    request: run_request.RunRequest
    identity: DatabaseIdentity
    source: Source
    pending: PendingWork


# A check runs after the lock is taken and before anything changes; it raises a LockstepError to
# stop the run, or returns fields for the result (a plan, a rehearsal summary).
Check = Callable[[CheckContext], Mapping[str, Any]]


def run(
    request: run_request.RunRequest,
    checks: Sequence[Check] = (),
    stop: graceful_stop.GracefulStop | None = None,
) -> run_request.RunResult:
    """Bring the database to ``request.target``; raise a :class:`~lockstep.errors.LockstepError`
    when that fails.

    Once the lock is held (here, or by the pod's lock sidecar), the fence ends any backend of
    an earlier run still working on the database (:mod:`lockstep.pod.fence`); then ``checks``
    run in order, so that what they saw (the pending work) is what runs: nobody else can
    migrate in between. ``stop``, when given, has its SIGTERM handler installed by the caller:
    the run then cancels its statement and reports the stop (:mod:`lockstep.pod.graceful_stop`).
    """
    stop = stop or graceful_stop.GracefulStop()
    return graceful_stop.reported(stop, lambda: _run(request, checks, stop))


def _run(
    request: run_request.RunRequest, checks: Sequence[Check], stop: graceful_stop.GracefulStop
) -> run_request.RunResult:
    started = time.monotonic()
    identity = database.identity_from_url(request.database_url)
    lock_timeout_ms = (
        run_session.parse_duration_ms(request.statement_lock_timeout)
        if request.statement_lock_timeout
        else None
    )
    source = load_source(request)
    migrate = _migrator(request, identity, source)
    log.info("migrating %s with %s to %s", identity, request.tool, request.target)
    engine = database.make_engine(request.database_url)
    try:
        with (
            run_session.database_errors(identity, request.database_url),
            run_session.migration_lock(engine, identity, request) as (lock_wait, lock_connection),
        ):
            extras = run_session.fence_earlier_runs(
                engine, identity, request.database_url, request.lock_wait_seconds, lock_connection
            )
            extras.update(_run_checks(checks, engine, request, identity, source))
            with run_session.migration_connection(
                engine, identity, request.database_url
            ) as connection:
                stop.watch(connection, identity, request.database_url)
                run_session.set_lock_timeout(connection, identity, lock_timeout_ms)
                outcome = migrate(connection)
    finally:
        engine.dispose()
    return run_request.result_of(
        request,
        outcome,
        duration_seconds=time.monotonic() - started,
        lock_wait_seconds=lock_wait,
        extras=extras,
    )


def load_source(request: run_request.RunRequest) -> Source:
    """Load and check the source and the target, before any database is involved.

    This happens before queueing for the lock: a broken ConfigMap should not
    wait ten minutes behind another migration to say so.
    """
    if request.tool == "sql":
        from lockstep import sqlfiles
        from lockstep.pod import sql_planning

        migration_set = sqlfiles.load_directory(request.source_dir)
        return SqlSource(
            migration_set, sql_planning.resolve_sql_target(migration_set, request.target)
        )
    if request.tool == "alembic":
        from lockstep.pod import alembic_migration

        return AlembicSource(request.source_dir, alembic_migration.load_script(request.source_dir))
    raise errors.InvalidRequest(
        f"the built-in runner runs tools {', '.join(run_request.TOOLS)}, not {request.tool!r}; "
        f"other tools run from their own image"
    )


def _migrator(
    request: run_request.RunRequest, identity: DatabaseIdentity, source: Source
) -> Callable[[sa.Connection], run_request.Outcome]:
    """What migrates, given the migration connection."""
    if isinstance(source, SqlSource):
        migration_set, target = source.migration_set, source.target
        from lockstep.pod import sql_execution  # tool sql only: Alembic runs skip its imports

        return lambda connection: sql_execution.migrate_sql(
            connection, identity, request, migration_set, target
        )
    from lockstep.pod import alembic_migration

    script = source.script
    return lambda connection: alembic_migration.migrate(connection, identity, request, script)


def pending_work(
    connection: sa.Connection,
    source: Source,
    request: run_request.RunRequest,
    identity: DatabaseIdentity,
) -> PendingWork:
    """What a run of ``request`` would do now, read-only; refuses as the run would refuse."""
    if isinstance(source, SqlSource):
        return _pending_sql(connection, source, request, identity)
    from lockstep.pod import alembic_migration

    options = alembic_migration.version_table_options(request)
    current = alembic_migration.current_revision(connection, identity, options)
    target = alembic_migration.resolve_target(source.script, request.target)
    direction, steps = alembic_migration.plan_alembic(source.script, current, target, identity)
    if direction == "down":
        alembic_migration.refuse_downgrade(request, identity, current, target, steps)
    reached = current if direction == "none" else target
    from lockstep.pod.plan_model import PendingWork

    return PendingWork(direction, current, reached, tuple(steps))


def _pending_sql(
    connection: sa.Connection,
    source: SqlSource,
    request: run_request.RunRequest,
    identity: DatabaseIdentity,
) -> PendingWork:
    from lockstep.pod import sql_history, sql_planning

    history = sql_history.preview_history(
        connection, identity, request, source.migration_set, source.target
    )
    plan = sql_planning.plan_sql(
        source.migration_set,
        history.rows,
        source.target,
        allow_downgrade=request.allow_downgrade,
        identity=identity,
        table=history.shown,
    )
    files = tuple(_file_that_runs(migration, plan.direction) for migration in plan.steps)
    versions = tuple(migration.version for migration in plan.steps)
    from lockstep.pod.plan_model import PendingWork

    return PendingWork(plan.direction, plan.current, plan.target, versions, files)


def _file_that_runs(migration: Migration, direction: run_request.Direction) -> SqlFile:
    if direction == "down":
        assert (
            migration.down is not None
        )  # sql_planning.plan_sql refuses a downgrade without U files
        return migration.down
    return migration.up


def _run_checks(
    checks: Sequence[Check],
    engine: sa.Engine,
    request: run_request.RunRequest,
    identity: DatabaseIdentity,
    source: Source,
) -> dict[str, Any]:
    """Run the checks on what is pending; their result fields, merged."""
    if not checks:
        return {}
    with database.connect(engine, request.database_url) as connection:
        pending = pending_work(connection, source, request, identity)
    context = CheckContext(request, identity, source, pending)
    extras: dict[str, Any] = {}
    for check in checks:
        extras.update(check(context))
    return extras
