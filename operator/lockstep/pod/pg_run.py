"""`lockstep run --tool sql` on PostgreSQL without SQLAlchemy: a fast start, files in pipelines.

A run of 200 small files took 4-5 times one psql session (issue 21): half a second went to
start-up (SQLAlchemy's import and its engine's first connect), and every file cost five round
trips (its statements, the session reset, an UPDATE and an INSERT of its history row, the
COMMIT). This path connects with psycopg (:mod:`lockstep.pod.pg_direct`) and sends each file as
one unit of a libpq pipeline (:mod:`lockstep.pod.pg_pipeline`)::

    BEGIN; <the file's statements>; RESET ALL; RESET ROLE; SELECT set_config(...);
    INSERT INTO <history> ...; COMMIT

several files per pipeline, so 200 small files take two round trips. What stays as before
(docs/adr/0016-runner-pipelines.md, docs/adr/0009-the-fence.md):

* each file is its own transaction with its history row, committed before the next file runs
  (the server runs a pipeline's commands in order); a failure stops the pipeline there: the
  server skips everything after the failed command up to the batch's end, the file's
  transaction is rolled back, and nothing after it is sent;
* the failed command is known exactly (results come back in order), so the message names the
  file, the statement's line and text, as the SQLAlchemy path words it
  (:mod:`lockstep.pod.sql_messages`);
* the lock, the fence, the tagged migration connection, the statement lock timeout and the
  session reset between files are the same statements on the same connections;
* SIGTERM cancels the running statement (libpq reports the connection busy while a pipeline
  runs) or refuses the next batch (:mod:`lockstep.pod.graceful_stop`).

It covers what a Job of the built-in runner usually asks: transactional files, up or down, with
or without the lock, with an owner. Anything else (checks before migrating, spec.baseline,
files that run statement by statement or hold ``COPY``, a URL it does not read like SQLAlchemy,
an older history table) goes to :func:`lockstep.pod.runner.run`, decided before anything is
changed (:class:`lockstep.pod.pg_history.NeedsFullPath`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from lockstep import db_identity, errors, sql_file_modes, sqlfiles
from lockstep.contract import report
from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import (
    graceful_stop,
    lock_words,
    pg_direct,
    pg_history,
    pg_pipeline,
    run_request,
    sql_messages,
    sql_planning,
)
from lockstep.sqlfiles import Migration, SqlFile

if TYPE_CHECKING:
    import psycopg

    from lockstep.pod import runner

log = logging.getLogger("lockstep.runner")

# Commands per pipeline: one batch's text and results are held at once; its sync is a round trip.
BATCH: Final = 1000
_COPY: Final = re.compile(r"copy\b", re.I)
_DETAIL_CHARS: Final = 300
Kind = Literal["statement", "bookkeeping", "commit"]
NeedsFullPath = pg_history.NeedsFullPath


def run(
    request: run_request.RunRequest,
    checks: Sequence[runner.Check],
    stop: graceful_stop.GracefulStop,
) -> run_request.RunResult:
    """Run ``request`` on the fast path when it can, else on :func:`lockstep.pod.runner.run`."""
    parsed = _fast_path_params(request, checks)
    if parsed is not None:
        try:
            return graceful_stop.reported(
                stop, lambda: _run(request, stop, *parsed), let_through=(NeedsFullPath,)
            )
        except NeedsFullPath as why:
            stop.unwatch_driver()
            log.info("the run goes through SQLAlchemy: %s", why)
    from lockstep.pod import runner

    return runner.run(request, checks, stop)


def _fast_path_params(
    request: run_request.RunRequest, checks: Sequence[runner.Check]
) -> tuple[DatabaseIdentity, dict[str, Any]] | None:
    if request.tool != "sql" or checks or request.baseline is not None:
        return None
    return db_identity.postgres_connect_params(request.database_url)


def _run(
    request: run_request.RunRequest,
    stop: graceful_stop.GracefulStop,
    identity: DatabaseIdentity,
    params: dict[str, Any],
) -> run_request.RunResult:
    started = time.monotonic()
    timeout = request.statement_lock_timeout
    lock_timeout_ms = run_request.parse_duration_ms(timeout) if timeout else None
    migration_set = sqlfiles.load_directory(request.source_dir)
    target = sql_planning.resolve_sql_target(migration_set, request.target)
    import psycopg

    if not psycopg.Pipeline.is_supported():
        raise NeedsFullPath("this libpq has no pipeline mode")
    log.info("migrating %s with %s to %s", identity, request.tool, request.target)
    url = request.database_url
    extras: dict[str, Any] = {}
    with (
        pg_direct.run_errors(identity, url),
        contextlib.closing(pg_direct.connect(params, url)) as own,
    ):
        lock = (
            pg_direct.migration_lock(own, identity, request.lock_wait_seconds)
            if request.take_lock
            else contextlib.nullcontext(0.0)
        )
        with lock as lock_wait:
            fenced = pg_direct.fence_earlier_runs(own, identity, request.lock_wait_seconds)
            if fenced:
                extras["fenced"] = report.clip(lock_words.describe(fenced), _DETAIL_CHARS)
            with contextlib.closing(pg_direct.migration_connection(params, identity, url)) as conn:
                stop.watch_driver(conn, identity)
                pg_direct.set_lock_timeout(conn, lock_timeout_ms)
                outcome = _Files(conn, identity, url, stop).migrate(request, migration_set, target)
    return run_request.result_of(
        request,
        outcome,
        duration_seconds=time.monotonic() - started,
        lock_wait_seconds=lock_wait,
        extras=extras,
    )


@dataclass(frozen=True)
class _Step:
    """What one command of the pipeline is: a file's statement, Lockstep's, or the COMMIT."""

    file: int  # index into the files of the plan
    kind: Kind
    statement: int = 0  # the statement's index in the file (kind statement)


@dataclass
class _Files:
    """Runs the plan's files through pipelines on the migration connection."""

    conn: psycopg.Connection[Any]
    identity: DatabaseIdentity
    url: str
    stop: graceful_stop.GracefulStop

    def migrate(
        self,
        request: run_request.RunRequest,
        migration_set: sqlfiles.MigrationSet,
        target: str | None,
    ) -> run_request.Outcome:
        history = pg_history.open_history(self.conn, self.identity, request)
        plan = sql_planning.plan_sql(
            migration_set,
            history.rows,
            target,
            allow_downgrade=request.allow_downgrade,
            identity=self.identity,
            table=history.shown,
        )
        if plan.direction == "none":
            log.info(
                "%s is at version %s already: nothing to do", self.identity, plan.current or "0"
            )
            return run_request.Outcome("none", plan.current, plan.current, [])
        major = self.conn.info.server_version // 10000
        files = [
            sql_file_modes.plan_file(_file_of(m, plan.direction), "postgresql", major)
            for m in plan.steps
        ]  # every refusal before the first file runs
        for file_plan in files:
            if not file_plan.transactional:
                raise NeedsFullPath(f"{file_plan.name} runs statement by statement")
            if any(_COPY.match(statement.text) for statement in file_plan.statements):
                raise NeedsFullPath(f"{file_plan.name} holds COPY, which a pipeline cannot send")
        commands, steps = self._commands(plan.steps, files, plan.direction, history)
        self._send(commands, steps, files, history.shown)
        return run_request.Outcome(
            plan.direction, plan.current, plan.target, [m.version for m in plan.steps]
        )

    def _commands(
        self,
        migrations: Sequence[Migration],
        files: Sequence[sql_file_modes.FilePlan],
        direction: run_request.Direction,
        history: pg_history.History,
    ) -> tuple[list[pg_pipeline.Command], list[_Step]]:
        encoding = self.conn.info.encoding
        reset = self._reset_commands()
        commands: list[pg_pipeline.Command] = []
        steps: list[_Step] = []
        for index, (migration, file_plan) in enumerate(zip(migrations, files, strict=True)):
            commands.append((b"BEGIN", None))
            steps.append(_Step(index, "statement", 0))  # a refused BEGIN: the file's first
            for number, statement in enumerate(file_plan.statements):
                commands.append((statement.text.encode(encoding), None))
                steps.append(_Step(index, "statement", number))
            record = [*reset, _record(history.table, migration, direction, encoding)]
            commands.extend(record)
            steps.extend(_Step(index, "bookkeeping") for _ in record)
            commands.append((b"COMMIT", None))
            steps.append(_Step(index, "commit"))
        return commands, steps

    def _reset_commands(self) -> list[pg_pipeline.Command]:
        """The session as the run set it up, put back inside each file's transaction."""
        rows = self.conn.execute(
            "SELECT name, setting FROM pg_settings WHERE source = 'session'"
        ).fetchall()
        commands: list[pg_pipeline.Command] = [(b"RESET ALL", None), (b"RESET ROLE", None)]
        if rows:
            calls = ", ".join(
                f"set_config(${2 * i + 1}, ${2 * i + 2}, false)" for i in range(len(rows))
            )
            encoding = self.conn.info.encoding
            values = [str(part).encode(encoding) for row in rows for part in row]
            commands.append((f"SELECT {calls}".encode(), values))
        return commands

    def _send(
        self,
        commands: Sequence[pg_pipeline.Command],
        steps: Sequence[_Step],
        files: Sequence[sql_file_modes.FilePlan],
        shown: str,
    ) -> None:
        import psycopg

        logged = 0
        for start in range(0, len(commands), BATCH):
            run = pg_pipeline.Pipeline(self.conn.pgconn)
            failure: Exception | None = None
            if self.stop.refuses_next_statement():
                failure = self.stop.cancel_error()
            else:
                try:
                    result = run.send_and_collect(commands[start : start + BATCH])
                except psycopg.Error as error:  # the connection broke mid-pipeline
                    failure = error
                else:
                    if result is not None:
                        encoding = self.conn.info.encoding
                        failure = psycopg.errors.error_from_result(result, encoding=encoding)
            index = min(start + run.done, len(steps) - 1)
            committed = logged + sum(1 for step in steps[start:index] if step.kind == "commit")
            for file_plan in files[logged:committed]:
                log.info("applied %s on %s in one transaction", file_plan.name, self.identity)
            logged = committed
            if failure is not None:
                raise self._failed(steps[index], files, failure, shown) from None

    def _failed(
        self,
        step: _Step,
        files: Sequence[sql_file_modes.FilePlan],
        error: Exception,
        shown: str,
    ) -> errors.LockstepError:
        """The file's transaction rolled back, and the failure told as the full path tells it."""
        lost = pg_direct.lost(error, self.conn)
        if not lost:
            with contextlib.suppress(Exception):
                self.conn.execute("ROLLBACK")  # a warning only when no transaction is open
        file_plan = files[step.file]
        detail = pg_direct.detail(error, self.url)
        if step.kind == "statement":
            statement = file_plan.statements[step.statement] if file_plan.statements else None
            if statement is None:
                statement = sqlfiles.Statement("", 1)
            if lost:
                return sql_messages.lost_in_file(file_plan.name, statement, self.identity, detail)
            hint = pg_direct.lock_hint(error)
            return sql_messages.file_failed(file_plan.name, statement, self.identity, detail, hint)
        if step.kind == "bookkeeping":
            what = f"record {file_plan.name} in {shown} (in the file's transaction)"
            return sql_messages.own_query_failed(what, self.identity, detail, lost)
        if lost:
            return sql_messages.lost_at_commit(file_plan.name, self.identity, detail)
        return sql_messages.run_query_failed(self.identity, detail, lost)


def _record(
    table: str, migration: Migration, direction: run_request.Direction, encoding: str
) -> pg_pipeline.Command:
    """The file's history row, in its transaction: the time is the server's, from the
    transaction's start (its BEGIN) to this statement."""
    if direction == "down":
        return (f"DELETE FROM {table} WHERE version = $1".encode(), [migration.version.encode()])
    text = (
        f"INSERT INTO {table} (version, description, checksum, applied_at, execution_ms, "
        "success) VALUES ($1, $2, $3, clock_timestamp(), "
        "round(extract(epoch FROM clock_timestamp() - now()) * 1000)::integer, true)"
    )
    values = [migration.version, migration.description[:200], migration.up.checksum]
    return text.encode(), [value.encode(encoding) for value in values]


def _file_of(migration: Migration, direction: run_request.Direction) -> SqlFile:
    if direction == "down":
        assert migration.down is not None  # sql_planning.plan_sql refuses a downgrade without U
        return migration.down
    return migration.up
