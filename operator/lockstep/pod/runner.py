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
  a person repairs the database (:class:`PartiallyApplied` says how).
* ``alembic``: Alembic scripts through Alembic's Python API, on the connection
  Lockstep opened (the user's ``env.py`` picks it up from
  ``config.attributes["connection"]``; see :mod:`lockstep.tools.alembic`).

Checks may run between taking the lock and changing anything (see
:data:`Check`): :mod:`lockstep.pod.run_plan` verifies the approved plan,
:mod:`lockstep.pod.rehearsal` rehearses on a shadow database.  They live in their
own modules and are passed in, so this module knows nothing of plans.

Every error is a :data:`RunnerError` whose ``reason`` becomes the reason of
the DatabaseMigration's conditions, and whose message never holds a password.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import exc

from lockstep import database, errors, sqlfiles
from lockstep.database import DatabaseIdentity
from lockstep.pod import lock
from lockstep.sqlfiles import Migration, MigrationSet, SqlFile
from lockstep.tools import base as tool_base
from lockstep.tools import sql as sql_tool

log = logging.getLogger("lockstep.runner")

Tool = Literal["sql", "alembic"]
Direction = Literal["up", "down", "none"]
TOOLS: Final[tuple[str, ...]] = ("sql", "alembic")
# The termination message holds 4096 bytes; `lockstep run` adds {"result": ...} around this.
RESULT_JSON_LIMIT: Final = 3900  # bytes: the whole result, extras (the plan) included
RUN_JSON_LIMIT: Final = 1800  # bytes: the run's own fields (the applied list is cut to fit)
_STATEMENT_CHARS: Final = 160
_DB_ERROR_CHARS: Final = 300

# --------------------------------------------------------------------------- errors

# The base class lives in `database` because the lock and the file loader, which
# sit below the runner, raise these errors too; this is its public name.
RunnerError = errors.LockstepError
LockTimeout = lock.LockTimeout
InvalidSource = sqlfiles.InvalidSource
DatabaseUnavailable = errors.DatabaseUnavailable
InvalidDatabaseUrl = errors.InvalidDatabaseUrl

# The class names double as condition reasons, hence no "Error" suffix.


class InvalidRequest(RunnerError):  # noqa: N818
    """The run's parameters are wrong (unknown tool, malformed timeout)."""

    reason = "InvalidSpec"


class InvalidTarget(RunnerError):  # noqa: N818
    reason = "InvalidTarget"


class ChecksumMismatch(RunnerError):  # noqa: N818
    reason = "ChecksumMismatch"


class DowngradeForbidden(RunnerError):  # noqa: N818
    reason = "DowngradeForbidden"


class MigrationFailed(RunnerError):  # noqa: N818
    """A migration failed and nothing of it stayed applied (rolled back, or never started)."""

    reason = "MigrationFailed"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


class PartiallyApplied(RunnerError):  # noqa: N818
    """A migration stopped half-way on a database without transactional DDL."""

    reason = "PartiallyApplied"

    def __init__(
        self,
        message: str,
        *,
        version: str | None = None,
        ran_lines: Sequence[int] = (),
        failed_line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.version = version
        self.ran_lines = list(ran_lines)
        self.failed_line = failed_line


class DatabaseQueryFailed(RunnerError):  # noqa: N818
    """A query of Lockstep's own (not a migration's) failed."""

    reason = "DatabaseError"


# --------------------------------------------------------------------------- request / result


@dataclass(frozen=True)
class RunRequest:
    tool: Tool
    source_dir: Path
    database_url: str = field(repr=False)  # holds the password: keep it out of reprs
    target: str = "head"
    allow_downgrade: bool = False
    lock_wait_seconds: float = 600.0
    statement_lock_timeout: str | None = None  # "5s", "500ms", "1m"; None leaves the default
    # False when a lock sidecar in the same pod already holds the lock: waiting
    # for it here would wait for ourselves.
    take_lock: bool = True


@dataclass(frozen=True)
class RunResult:
    tool: str
    direction: Direction
    from_revision: str | None
    to_revision: str | None
    applied: list[str]  # versions/revisions run, in the order they ran
    duration_seconds: float
    lock_wait_seconds: float
    # What the checks before migrating reported (the plan, the rehearsal), by result key.
    extras: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON below :data:`RESULT_JSON_LIMIT` bytes.

        The Job writes it as its termination message, which Kubernetes caps.
        The run's own fields stay below :data:`RUN_JSON_LIMIT`: when ``applied``
        is too long, its head is kept and ``appliedTruncated`` set
        (``appliedCount`` is always the full count).  Each check keeps its
        extra small itself; one that would still overflow is replaced by a note.
        """
        return _dumps(_with_extras(self._run_payload(), self.extras))

    def _run_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "tool": self.tool,
            "direction": self.direction,
            "from": _clip(self.from_revision),
            "to": _clip(self.to_revision),
            "applied": list(self.applied),
            "appliedCount": len(self.applied),
            "durationSeconds": round(self.duration_seconds, 3),
            "lockWaitSeconds": round(self.lock_wait_seconds, 3),
        }
        if _fits(payload, RUN_JSON_LIMIT):
            return payload
        payload["appliedTruncated"] = True
        keep = longest_fitting(
            lambda n: _dumps({**payload, "applied": self.applied[:n]}), RUN_JSON_LIMIT
        )
        payload["applied"] = [_clip(item, 40) for item in self.applied[:keep]]
        return payload


def _with_extras(payload: dict[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    combined = dict(payload)
    for key, value in extras.items():
        combined[key] = value
        if not _fits(combined, RESULT_JSON_LIMIT):
            combined[key] = {"omitted": "too large for the termination message"}
    return combined


def _fits(payload: dict[str, Any], limit: int) -> bool:
    return len(_dumps(payload).encode()) <= limit


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _clip(value: str | None, limit: int = 200) -> str | None:
    return value if value is None or len(value) <= limit else value[: limit - 3] + "..."


def longest_fitting(render: Callable[[int], str], limit: int) -> int:
    """Largest n with render(n) within ``limit`` bytes (binary search: render grows with n)."""
    low, high = 0, 1
    while len(render(high).encode()) <= limit and high < 1 << 20:
        high *= 2
    while low < high - 1:
        middle = (low + high) // 2
        if len(render(middle).encode()) <= limit:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class _Outcome:
    direction: Direction
    from_revision: str | None
    to_revision: str | None
    applied: list[str]


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
class PendingWork:
    """What a run would do to the database as it is now; read without changing anything."""

    direction: Direction
    current: str | None  # the revision the database is at; None: nothing applied
    target: str | None  # the revision the run would reach; None: nothing applied
    revisions: tuple[str, ...]  # versions/revisions that would run, in order
    sql_files: tuple[SqlFile, ...] = ()  # tool sql: the V (up) or U (down) files, in order


@dataclass(frozen=True)
class CheckContext:
    """What a check before migrating may look at, while the migration lock is held."""

    request: RunRequest
    identity: DatabaseIdentity
    source: Source
    pending: PendingWork


# A check runs after the lock is taken and before anything changes; it raises a RunnerError to
# stop the run, or returns fields for the result (a plan, a rehearsal summary).
Check = Callable[[CheckContext], Mapping[str, Any]]


def run(request: RunRequest, checks: Sequence[Check] = ()) -> RunResult:
    """Bring the database to ``request.target``; raise a :data:`RunnerError` when that fails.

    ``checks`` run in order once the lock is held, so that what they saw (the
    pending work) is what runs: nobody else can migrate in between.
    """
    started = time.monotonic()
    identity = database.identity_from_url(request.database_url)
    lock_timeout_ms = (
        parse_duration_ms(request.statement_lock_timeout)
        if request.statement_lock_timeout
        else None
    )
    source = load_source(request)
    migrate = _migrator(request, identity, source)
    log.info("migrating %s with %s to %s", identity, request.tool, request.target)
    engine = database.make_engine(request.database_url)
    try:
        with (
            database_errors(identity, request.database_url),
            _migration_lock(engine, identity, request) as lock_wait,
        ):
            extras = _run_checks(checks, engine, request, identity, source)
            with _migration_connection(engine, identity, request.database_url) as connection:
                _set_lock_timeout(connection, identity, lock_timeout_ms)
                outcome = migrate(connection)
    finally:
        engine.dispose()
    return RunResult(
        tool=request.tool,
        direction=outcome.direction,
        from_revision=outcome.from_revision,
        to_revision=outcome.to_revision,
        applied=outcome.applied,
        duration_seconds=time.monotonic() - started,
        lock_wait_seconds=lock_wait,
        extras=extras,
    )


def load_source(request: RunRequest) -> Source:
    """Load and check the source and the target, before any database is involved.

    This happens before queueing for the lock: a broken ConfigMap should not
    wait ten minutes behind another migration to say so.
    """
    if request.tool == "sql":
        migration_set = sqlfiles.load_directory(request.source_dir)
        return SqlSource(migration_set, resolve_sql_target(migration_set, request.target))
    if request.tool == "alembic":
        return AlembicSource(request.source_dir, _alembic_script(request.source_dir))
    raise InvalidRequest(
        f"the built-in runner runs tools {', '.join(TOOLS)}, not {request.tool!r}; "
        f"other tools run from their own image"
    )


def _migrator(
    request: RunRequest, identity: DatabaseIdentity, source: Source
) -> Callable[[sa.Connection], _Outcome]:
    """What migrates, given the migration connection."""
    if isinstance(source, SqlSource):
        migration_set, target = source.migration_set, source.target
        return lambda connection: _migrate_sql(connection, identity, request, migration_set, target)
    script = source.script
    return lambda connection: _migrate_alembic(connection, identity, request, script)


def pending_work(
    connection: sa.Connection, source: Source, request: RunRequest, identity: DatabaseIdentity
) -> PendingWork:
    """What a run of ``request`` would do now, read-only; refuses as the run would refuse."""
    if isinstance(source, SqlSource):
        return _pending_sql(connection, source, request, identity)
    current = _alembic_current(connection, identity)
    target = _resolve_alembic_target(source.script, request.target)
    direction, steps = plan_alembic(source.script, current, target, identity)
    if direction == "down":
        _refuse_alembic_downgrade(request, identity, current, target, steps)
    reached = current if direction == "none" else target
    return PendingWork(direction, current, reached, tuple(steps))


def _pending_sql(
    connection: sa.Connection, source: SqlSource, request: RunRequest, identity: DatabaseIdentity
) -> PendingWork:
    with connection.begin():
        exists = tool_base.has_table(connection, sql_tool.HISTORY_TABLE)
        history = _read_history(connection) if exists else []
    plan = plan_sql(
        source.migration_set,
        history,
        source.target,
        allow_downgrade=request.allow_downgrade,
        identity=identity,
    )
    files = tuple(_file_that_runs(migration, plan.direction) for migration in plan.steps)
    versions = tuple(migration.version for migration in plan.steps)
    return PendingWork(plan.direction, plan.current, plan.target, versions, files)


def _file_that_runs(migration: Migration, direction: Direction) -> SqlFile:
    if direction == "down":
        assert migration.down is not None  # plan_sql refuses a downgrade without U files
        return migration.down
    return migration.up


def _run_checks(
    checks: Sequence[Check],
    engine: sa.Engine,
    request: RunRequest,
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


@contextlib.contextmanager
def database_errors(identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Turn driver errors on Lockstep's own connections into errors a person can act on."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise DatabaseUnavailable(
            f"the database {identity} failed during the run: {db_error_text(error, url)}; "
            f"the run stopped: run it again once the database is reachable and healthy"
        ) from None
    except exc.DBAPIError as error:
        raise DatabaseQueryFailed(
            f"a query of Lockstep's own failed on {identity}: {db_error_text(error, url)}; "
            f"check that the URL's user may create and write tables in this database"
        ) from None


@contextlib.contextmanager
def _migration_lock(
    engine: sa.Engine, identity: DatabaseIdentity, request: RunRequest
) -> Iterator[float]:
    """Hold the migration lock (on its own connection); yields how long it took to get."""
    if not request.take_lock:
        yield 0.0
        return
    with (
        database.connect(engine, request.database_url) as lock_connection,
        lock.hold_advisory_lock(lock_connection, identity, request.lock_wait_seconds) as hold,
    ):
        yield hold.wait_seconds


@contextlib.contextmanager
def _migration_connection(
    engine: sa.Engine, identity: DatabaseIdentity, url: str
) -> Iterator[sa.Connection]:
    with database.connect(engine, url) as connection:
        if identity.family == "mysql":
            # No transactional DDL: every statement commits, so record each as it happens.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str) -> int:
    """``"5s"`` → 5000, ``"500ms"`` → 500, ``"1m"`` → 60000 (a unit is required)."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidRequest(
            f"statement lock timeout {text!r} is not a duration such as 500ms, 5s or 1m"
        )
    milliseconds = math.ceil(float(match[1]) * _UNIT_MS[match[2]])
    if milliseconds <= 0:
        raise InvalidRequest(f"statement lock timeout {text!r} must be more than zero")
    return milliseconds


def _set_lock_timeout(
    connection: sa.Connection, identity: DatabaseIdentity, milliseconds: int | None
) -> None:
    """Bound how long one migration statement waits for a table lock.

    Without it, an ALTER TABLE queued behind a long query blocks every later
    query on that table: the application stalls although the migration has
    not even started.  Failing fast and retrying later is kinder.
    """
    if milliseconds is None:
        return
    with connection.begin():
        if identity.family == "postgresql":
            connection.execute(
                sa.text("SELECT set_config('lock_timeout', :value, false)"),
                {"value": f"{milliseconds}ms"},
            )
        elif identity.family == "mysql":
            seconds = max(1, math.ceil(milliseconds / 1000))  # whole seconds only
            connection.exec_driver_sql(f"SET SESSION lock_wait_timeout = {seconds}")
            connection.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        else:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {milliseconds}")


# --------------------------------------------------------------------------- shared helpers


def db_error_text(error: BaseException, url: str) -> str:
    """The database's own words, one line, without secrets."""
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    args: tuple[Any, ...] = getattr(original, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (code, message)
        text = f"{args[1]} (error {args[0]})"
    else:
        lines = str(original).strip().splitlines()
        text = lines[0] if lines else type(original).__name__
    text = database.scrub(text, url)
    return text if len(text) <= _DB_ERROR_CHARS else text[: _DB_ERROR_CHARS - 3] + "..."


def _lock_hint(error: exc.DBAPIError) -> str:
    """Extra advice when a statement gave up waiting for a table lock."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    if sqlstate == "55P03" or (args and args[0] in (1205, 3572)) or "locked" in str(error.orig):
        return (
            " The statement waited longer than the statement lock timeout for a lock held by "
            "another session (a long query or an open transaction): run again later, or raise "
            "spec.timeouts.statementLockTimeout."
        )
    return ""


# --------------------------------------------------------------------------- sql: planning


@dataclass(frozen=True)
class HistoryRow:
    version: str
    description: str
    checksum: str
    success: bool
    applied_at: datetime | None = None


@dataclass(frozen=True)
class SqlPlan:
    direction: Direction
    current: str | None
    target: str | None
    steps: tuple[Migration, ...]  # in the order they run


def resolve_sql_target(migration_set: MigrationSet, target: str) -> str | None:
    """The canonical version ``target`` names; None for "nothing applied"."""
    if not migration_set.migrations:
        raise InvalidSource(
            f"migration source {migration_set.directory} holds no V<version>__<description>.sql "
            f"file; check that the ConfigMap is the right one and its keys end in .sql"
        )
    cleaned = target.strip()
    if cleaned.lower() == "head":
        return migration_set.migrations[-1].version
    if cleaned.lower() in tool_base.BASE_TARGETS:
        return None
    found = migration_set.find(cleaned)
    if found is None:
        raise InvalidTarget(
            f"target {target!r} names no migration in {migration_set.directory}; known versions: "
            f"{_list(migration_set.versions)} (or head, or 0/base for none)"
        )
    return found.version


def _list(items: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def plan_sql(
    migration_set: MigrationSet,
    history: Sequence[HistoryRow],
    target: str | None,
    *,
    allow_downgrade: bool,
    identity: DatabaseIdentity,
) -> SqlPlan:
    """Decide what to run (pure).  Every refusal happens here, before anything runs."""
    _refuse_failed(history, identity)
    applied = {row.version: row for row in history}
    _refuse_unknown_applied(migration_set, applied, identity)
    _refuse_changed(migration_set, applied, identity)
    current = sql_tool.newest_version(list(applied))
    current_key = sqlfiles.version_key(current) if current else ()
    target_key = sqlfiles.version_key(target) if target else ()
    _refuse_out_of_order(migration_set, applied, current, current_key)
    if target_key == current_key:
        return SqlPlan("none", current, target, ())
    if target_key > current_key:
        steps = tuple(m for m in migration_set.migrations if current_key < m.key <= target_key)
        return SqlPlan("up", current, target, steps)
    steps = tuple(
        m for m in reversed(migration_set.migrations) if target_key < m.key <= current_key
    )
    if not allow_downgrade:
        raise DowngradeForbidden(
            f"{identity} is at version {current} and the target {target or '0'} is lower: "
            f"reaching it would undo {_list([m.version for m in steps])}. Downgrades are "
            f"forbidden: set spec.downgrade to Allow to permit it, or set the target to "
            f"{current} or head."
        )
    missing = [f"U{m.version}__*.sql (undoes {m.up.name})" for m in steps if m.down is None]
    if missing:
        raise InvalidSource(
            f"cannot go down to {target or '0'} on {identity}: no undo file for "
            f"{_list(missing)}; add the U files to the source, nothing was changed"
        )
    return SqlPlan("down", current, target, steps)


def _refuse_failed(history: Sequence[HistoryRow], identity: DatabaseIdentity) -> None:
    failed = [row for row in history if not row.success]
    if failed:
        row = failed[0]
        raise PartiallyApplied(
            f"version {row.version} ({row.description}) failed part-way on {identity} "
            f"at {row.applied_at or 'an earlier run'} and may be half applied, so Lockstep "
            f"will not run anything until a person repairs it: finish or undo that version's "
            f"statements by hand, then delete its history row (DELETE FROM "
            f"{sql_tool.HISTORY_TABLE} WHERE version = '{row.version}') and run again."
        )


def _refuse_unknown_applied(
    migration_set: MigrationSet, applied: dict[str, HistoryRow], identity: DatabaseIdentity
) -> None:
    unknown = [version for version in applied if migration_set.find(version) is None]
    if unknown:
        raise InvalidSource(
            f"{identity} has version(s) {_list(sorted(unknown, key=sqlfiles.version_key))} "
            f"applied, but {migration_set.directory} has no V file for them: the source is "
            f"older than the database, or a file was renamed. Restore the files (never delete "
            f"an applied migration); to forget a version, delete its row from "
            f"{sql_tool.HISTORY_TABLE}."
        )


def _refuse_changed(
    migration_set: MigrationSet, applied: dict[str, HistoryRow], identity: DatabaseIdentity
) -> None:
    for version, row in applied.items():
        migration = migration_set.find(version)
        if migration is not None and migration.up.checksum != row.checksum:
            raise ChecksumMismatch(
                f"{migration.up.name} changed after it was applied to {identity} (recorded "
                f"checksum {row.checksum[:12]}..., file now {migration.up.checksum[:12]}...). "
                f"Applied migrations are never re-run: restore the file as it was and put the "
                f"change in a new V file; if the edit is harmless (a comment), update the "
                f"checksum of version {version} in {sql_tool.HISTORY_TABLE} by hand."
            )


def _refuse_out_of_order(
    migration_set: MigrationSet,
    applied: dict[str, HistoryRow],
    current: str | None,
    current_key: sqlfiles.Version,
) -> None:
    skipped = [
        m.up.name
        for m in migration_set.migrations
        if m.key < current_key and m.version not in applied
    ]
    if skipped:
        raise InvalidSource(
            f"{_list(skipped)} sorts below version {current}, which is already applied: "
            f"Lockstep applies versions in order only. Rename the file(s) to a version "
            f"above {current}."
        )


# --------------------------------------------------------------------------- sql: running


def _migrate_sql(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: RunRequest,
    migration_set: MigrationSet,
    target: str | None,
) -> _Outcome:
    with connection.begin():
        sql_tool.metadata.create_all(connection, checkfirst=True)
        history = _read_history(connection)
    plan = plan_sql(
        migration_set,
        history,
        target,
        allow_downgrade=request.allow_downgrade,
        identity=identity,
    )
    if plan.direction == "none":
        log.info("%s is at version %s already: nothing to do", identity, plan.current or "0")
        return _Outcome("none", plan.current, plan.current, [])
    runner = _SqlFileRunner(connection, identity, request.database_url)
    for migration in plan.steps:
        if plan.direction == "up":
            runner.apply(migration)
        else:
            runner.revert(migration)
    return _Outcome(plan.direction, plan.current, plan.target, [m.version for m in plan.steps])


def _read_history(connection: sa.Connection) -> list[HistoryRow]:
    table = sql_tool.history
    rows = connection.execute(
        sa.select(
            table.c.version,
            table.c.description,
            table.c.checksum,
            table.c.success,
            table.c.applied_at,
        )
    )
    return [
        HistoryRow(r.version, r.description, r.checksum, bool(r.success), r.applied_at)
        for r in rows
    ]


class _StatementError(Exception):
    def __init__(self, statements: list[sqlfiles.Statement], index: int, error: exc.DBAPIError):
        super().__init__(str(error))
        self.statements = statements
        self.index = index
        self.error = error


@dataclass
class _SqlFileRunner:
    """Runs migration files and keeps the history table in step with them."""

    connection: sa.Connection
    identity: DatabaseIdentity
    url: str

    @property
    def transactional(self) -> bool:
        return self.identity.family != "mysql"

    @property
    def dialect(self) -> sqlfiles.Dialect:
        return self.identity.family

    def apply(self, migration: Migration) -> None:
        sql_file = migration.up
        log.info("applying %s on %s", sql_file.name, self.identity)
        started = time.monotonic()

        def record(connection: sa.Connection) -> None:
            self._insert_history(connection, migration, _elapsed_ms(started), success=True)

        def record_partial(connection: sa.Connection) -> None:
            self._insert_history(connection, migration, _elapsed_ms(started), success=False)

        self._run_file(sql_file, record, record_partial, "up")
        log.info("applied %s in %d ms", sql_file.name, _elapsed_ms(started))

    def revert(self, migration: Migration) -> None:
        assert migration.down is not None  # plan_sql refuses a downgrade without U files
        sql_file = migration.down
        log.info(
            "reverting version %s with %s on %s", migration.version, sql_file.name, self.identity
        )
        started = time.monotonic()
        table = sql_tool.history
        where = table.c.version == migration.version

        def record(connection: sa.Connection) -> None:
            connection.execute(sa.delete(table).where(where))

        def record_partial(connection: sa.Connection) -> None:
            connection.execute(sa.update(table).where(where).values(success=False))

        self._run_file(sql_file, record, record_partial, "down")
        log.info("reverted version %s in %d ms", migration.version, _elapsed_ms(started))

    def _run_file(
        self,
        sql_file: SqlFile,
        record: Callable[[sa.Connection], None],
        record_partial: Callable[[sa.Connection], None],
        direction: Direction,
    ) -> None:
        statements = sql_file.statements(self.dialect)
        try:
            with self.connection.begin():
                self._execute(statements)
                record(self.connection)
        except _StatementError as failure:
            if self.transactional or failure.index == 0:
                raise self._failed(sql_file, failure) from None
            with self.connection.begin():
                record_partial(self.connection)
            raise self._partial(sql_file, failure, direction) from None

    def _execute(self, statements: list[sqlfiles.Statement]) -> None:
        for index, statement in enumerate(statements):
            try:
                # no_parameters: the text goes to the server as written, so a
                # '%' or ':name' in the SQL is not taken for a bind parameter.
                self.connection.exec_driver_sql(
                    statement.text, execution_options={"no_parameters": True}
                )
            except exc.DBAPIError as error:
                raise _StatementError(statements, index, error) from error

    def _insert_history(
        self, connection: sa.Connection, migration: Migration, elapsed_ms: int, *, success: bool
    ) -> None:
        connection.execute(
            sa.insert(sql_tool.history).values(
                version=migration.version,
                description=migration.description[:200],
                checksum=migration.up.checksum,
                applied_at=datetime.now(UTC),
                execution_ms=elapsed_ms,
                success=success,
            )
        )

    def _failed(self, sql_file: SqlFile, failure: _StatementError) -> MigrationFailed:
        statement = failure.statements[failure.index]
        rolled_back = (
            "Lockstep rolled the whole file back"
            if self.transactional
            else "it was the file's first statement, so nothing of the file ran"
        )
        return MigrationFailed(
            f"{sql_file.name} failed at line {statement.line} on {self.identity}: "
            f"{db_error_text(failure.error, self.url)} (statement: "
            f"{statement.shortened(_STATEMENT_CHARS)}). {rolled_back}: the database is as "
            f"before this file. Fix the file and run again.{_lock_hint(failure.error)}",
            file=sql_file.name,
            line=statement.line,
        )

    def _partial(
        self, sql_file: SqlFile, failure: _StatementError, direction: Direction
    ) -> PartiallyApplied:
        statements, index = failure.statements, failure.index
        failed = statements[index]
        ran = ", ".join(str(s.line) for s in statements[:index])
        not_run = statements[index + 1 :]
        skipped = (
            f"; the {len(not_run)} statement(s) after it (line(s) "
            f"{', '.join(str(s.line) for s in not_run)}) did not run"
            if not_run
            else ""
        )
        undo = " (while going down)" if direction == "down" else ""
        return PartiallyApplied(
            f"{sql_file.name}{undo} was only partly applied to {self.identity}, which cannot "
            f"roll back DDL: {index} statement(s) ran (starting at line(s) {ran}); the "
            f"statement at line {failed.line} failed: {db_error_text(failure.error, self.url)} "
            f"(statement: {failed.shortened(_STATEMENT_CHARS)}){skipped}. Lockstep recorded "
            f"version {sql_file.version} as failed and will refuse to run until a person "
            f"finishes or undoes that file's statements by hand, then deletes its row: "
            f"DELETE FROM {sql_tool.HISTORY_TABLE} WHERE version = '{sql_file.version}'."
            f"{_lock_hint(failure.error)}",
            version=sql_file.version,
            ran_lines=[s.line for s in statements[:index]],
            failed_line=failed.line,
        )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


# --------------------------------------------------------------------------- alembic


ALEMBIC_SUPPORT_FILES: Final = frozenset({"env.py", "script.py.mako", "alembic.ini"})


def alembic_config(source_dir: Path, connection: sa.Connection | None = None) -> AlembicConfig:
    """Alembic's configuration for ``source_dir``; without a connection, for offline rendering."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(source_dir))
    flat = _flat_versions(source_dir)
    if flat is not None:
        # One path, split on the OS separator (the legacy default splits on spaces).
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(flat))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _flat_versions(source_dir: Path) -> Path | None:
    """A `versions/` directory for a flat script directory, such as a mounted ConfigMap.

    ConfigMap keys cannot contain `/`, so env.py and the revision files arrive side by side.
    Alembic wants the revisions in their own directory: copy them into a temporary one (the Job
    mounts an emptyDir on /tmp; the root filesystem is read-only).
    """
    if (source_dir / "versions").is_dir():
        return None
    revisions = [
        path
        for path in sorted(source_dir.glob("*.py"))
        if path.name not in ALEMBIC_SUPPORT_FILES and not path.name.startswith(".")
    ]
    target = Path(tempfile.mkdtemp(prefix="lockstep-alembic-versions-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for path in revisions:
        shutil.copyfile(path, target / path.name)
    return target


def _alembic_script(source_dir: Path) -> ScriptDirectory:
    """Load and check the scripts (before the lock: errors here need no database)."""
    if not (source_dir / "env.py").is_file():
        raise InvalidSource(
            f"{source_dir} is not an Alembic script directory: env.py is missing "
            f"(expected env.py and revision files, in versions/ or beside env.py)"
        )
    try:
        script = ScriptDirectory.from_config(alembic_config(source_dir))
        heads = script.get_heads()
    except Exception as error:  # noqa: BLE001 - user code: any exception means a bad source
        raise InvalidSource(
            f"cannot load the Alembic scripts in {source_dir}: {type(error).__name__}: {error}"
        ) from None
    if len(heads) > 1:
        raise InvalidSource(
            f"the Alembic scripts in {source_dir} have {len(heads)} heads ({', '.join(heads)}); "
            f"merge them (alembic merge heads) so there is one line of history"
        )
    return script


def _alembic_current(connection: sa.Connection, identity: DatabaseIdentity) -> str | None:
    with connection.begin():
        heads = MigrationContext.configure(connection=connection).get_current_heads()
    if len(heads) > 1:
        raise InvalidSource(
            f"{identity} has several Alembic heads applied ({', '.join(heads)}); Lockstep "
            f"migrates a single line of history: merge the branches first"
        )
    return heads[0] if heads else None


def _resolve_alembic_target(script: ScriptDirectory, target: str) -> str | None:
    cleaned = target.strip()
    if cleaned.lower() == "head":
        heads = script.get_heads()
        return heads[0] if heads else None
    if cleaned.lower() in tool_base.BASE_TARGETS:
        return None
    try:
        return script.get_revision(cleaned).revision
    except Exception:  # noqa: BLE001 - Alembic raises several kinds for "not found"
        known = [s.revision for s in script.walk_revisions()]
        raise InvalidTarget(
            f"target {target!r} names no Alembic revision in {script.dir}; known revisions "
            f"(newest first): {_list(known)} (or head, or base)"
        ) from None


def _down_revisions(revision: Script) -> tuple[str, ...]:
    down = revision.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _ancestry(script: ScriptDirectory, revision: str | None) -> set[str]:
    """``revision`` and every revision below it."""
    seen: set[str] = set()
    pending = [revision] if revision else []
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(_down_revisions(script.get_revision(current)))
    return seen


def plan_alembic(
    script: ScriptDirectory, current: str | None, target: str | None, identity: DatabaseIdentity
) -> tuple[Direction, list[str]]:
    """Direction and the revisions that will run, in order."""
    if current == target:
        return "none", []
    try:
        below_current = _ancestry(script, current)
    except Exception:  # noqa: BLE001 - Alembic's "no such revision"
        raise InvalidSource(
            f"{identity} is at Alembic revision {current}, which is not in {script.dir}: the "
            f"scripts are older than the database; deploy the scripts that include {current}"
        ) from None
    below_target = _ancestry(script, target)
    newest_first = [s.revision for s in script.walk_revisions()]
    if target is None or target in below_current:
        return "down", [r for r in newest_first if r in below_current - below_target]
    if current is None or current in below_target:
        return "up", [r for r in reversed(newest_first) if r in below_target - below_current]
    raise InvalidTarget(
        f"target {target} and the applied revision {current} of {identity} are on different "
        f"branches; Lockstep moves along one line of history only"
    )


def _migrate_alembic(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: RunRequest,
    script: ScriptDirectory,
) -> _Outcome:
    current = _alembic_current(connection, identity)
    target = _resolve_alembic_target(script, request.target)
    direction, steps = plan_alembic(script, current, target, identity)
    if direction == "none":
        log.info("%s is at Alembic revision %s already: nothing to do", identity, current)
        return _Outcome("none", current, current, [])
    if direction == "down":
        _refuse_alembic_downgrade(request, identity, current, target, steps)
    config = alembic_config(request.source_dir, connection)
    log.info("migrating %s %s from %s to %s", identity, direction, current, target)
    try:
        if direction == "up":
            alembic_command.upgrade(config, target or "base")
        else:
            alembic_command.downgrade(config, target or "base")
        if connection.in_transaction():
            connection.commit()
    except Exception as error:  # noqa: BLE001 - user scripts may raise anything
        if connection.in_transaction():
            connection.rollback()
        reached = _alembic_current(connection, identity)
        raise _alembic_failed(error, identity, request.database_url, current, reached) from None
    reached = _alembic_current(connection, identity)
    return _Outcome(direction, current, reached, steps)


def _refuse_alembic_downgrade(
    request: RunRequest,
    identity: DatabaseIdentity,
    current: str | None,
    target: str | None,
    steps: Sequence[str],
) -> None:
    if not request.allow_downgrade:
        raise DowngradeForbidden(
            f"{identity} is at Alembic revision {current} and the target {target or 'base'} is "
            f"below it: reaching it would undo {_list(steps)}. Downgrades are forbidden: set "
            f"spec.downgrade to Allow to permit it, or set the target to {current} or head."
        )


def _alembic_failed(
    error: Exception,
    identity: DatabaseIdentity,
    url: str,
    started_at: str | None,
    reached: str | None,
) -> MigrationFailed:
    if isinstance(error, exc.DBAPIError):
        detail = db_error_text(error, url) + _lock_hint(error)
    else:
        detail = database.scrub(f"{type(error).__name__}: {error}", url)[:_DB_ERROR_CHARS]
    where = (
        f"the database stays at revision {reached or 'base'}"
        if reached == started_at
        else f"the revisions before the failing one were applied: the database is now at "
        f"revision {reached or 'base'}"
    )
    mysql = (
        " MySQL/MariaDB cannot roll back DDL: statements of the failing revision that ran "
        "before the error stay applied; check the schema by hand."
        if identity.family == "mysql"
        else ""
    )
    return MigrationFailed(f"Alembic migration failed on {identity}: {detail}; {where}.{mysql}")
