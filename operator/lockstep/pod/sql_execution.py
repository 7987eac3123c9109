"""Runs versioned SQL files on the migration connection and keeps the history table in step.

Each file runs as :mod:`lockstep.sql_file_modes` decides, and every refusal is made before the
first file runs. In one transaction (PostgreSQL and SQLite by default) a failed file leaves no
trace. Statement by statement (MySQL/MariaDB, which commit DDL on their own, and files that
cannot run in a transaction) the file is recorded as started *before* its first statement and
its progress after each one, so a file that fails or is interrupted part-way is refused by the
next run as :class:`lockstep.errors.PartiallyApplied`, saying which statements ran. Between
files the session is put back as the run set it up (:mod:`lockstep.pod.sql_session`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import database, errors, sql_file_modes, sqlfiles
from lockstep.database import DatabaseIdentity
from lockstep.pod import (
    run_request,
    run_session,
    sql_bookkeeping,
    sql_errors,
    sql_history,
    sql_messages,
    sql_pipeline,
    sql_planning,
    sql_session,
)
from lockstep.sqlfiles import Migration, MigrationSet, SqlFile

log = logging.getLogger("lockstep.runner")

_STATEMENT_CHARS: Final = 160


def migrate_sql(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    migration_set: MigrationSet,
    target: str | None,
) -> run_request.Outcome:
    url = request.database_url
    history = sql_history.open_history(connection, identity, request, migration_set, target)
    table, baselined = history.table, list(history.baselined)
    plan = sql_planning.plan_sql(
        migration_set,
        history.rows,
        target,
        allow_downgrade=request.allow_downgrade,
        identity=identity,
        table=history.shown,
    )
    if plan.direction == "none":
        log.info("%s is at version %s already: nothing to do", identity, plan.current or "0")
        return run_request.Outcome("none", plan.current, plan.current, [], baselined)
    major = _server_major(connection, identity)
    files = [
        sql_file_modes.plan_file(_file_of(m, plan.direction), identity.family, major)
        for m in plan.steps
    ]  # every refusal before the first file runs
    baseline = sql_session.capture(connection, identity)
    runner = _SqlFileRunner(connection, identity, url, table, history.shown, baseline)
    for migration, file_plan in zip(plan.steps, files, strict=True):
        runner.run(migration, file_plan, plan.direction)
        if not runner.session_reset:
            sql_session.restore(connection, baseline)
    return run_request.Outcome(
        plan.direction, plan.current, plan.target, [m.version for m in plan.steps], baselined
    )


def _file_of(migration: Migration, direction: run_request.Direction) -> SqlFile:
    if direction == "down":
        assert migration.down is not None  # sql_planning.plan_sql refuses a downgrade without U
        return migration.down
    return migration.up


def _server_major(connection: sa.Connection, identity: DatabaseIdentity) -> int | None:
    version = connection.dialect.server_version_info
    return int(version[0]) if identity.family == "postgresql" and version else None


_StatementError = sql_pipeline.StatementError


@dataclass
class _SqlFileRunner:
    """Runs migration files and keeps the history table in step with them."""

    connection: sa.Connection
    identity: DatabaseIdentity
    url: str
    table: sa.Table
    shown: str  # the table as a repair statement names it
    baseline: sql_session.Baseline
    session_reset: bool = False  # the last file's transaction put the session back already

    def run(
        self, migration: Migration, plan: sql_file_modes.FilePlan, direction: run_request.Direction
    ) -> None:
        sql_file = _file_of(migration, direction)
        verb = "applying" if direction == "up" else f"reverting version {migration.version} with"
        log.info("%s %s on %s (%s)", verb, sql_file.name, self.identity, plan.why)
        started = time.monotonic()
        self.session_reset = False
        if plan.transactional:
            self._in_one_transaction(migration, sql_file, plan, direction, started)
        else:
            self._statement_by_statement(migration, sql_file, plan, direction, started)
        log.info("done with %s in %d ms", sql_file.name, _elapsed_ms(started))

    # ------------------------------------------------------------------ one transaction

    def _in_one_transaction(
        self,
        migration: Migration,
        sql_file: SqlFile,
        plan: sql_file_modes.FilePlan,
        direction: run_request.Direction,
        started: float,
    ) -> None:
        statements = list(plan.statements)
        try:
            with self.connection.begin():
                self._execute(statements, None)
                what = f"record {sql_file.name} in {self.shown} (in the file's transaction)"
                with sql_bookkeeping.own_query(what, self.identity, self.url):
                    reset = sql_session.reset_in_transaction(self.connection, self.baseline)
                    self._record_done(migration, direction, started)
            self.session_reset = reset
        except _StatementError as failure:
            statement = statements[failure.index]
            detail = self._text(failure.error)
            if sql_errors.connection_lost(failure.error):
                raise sql_messages.lost_in_file(
                    sql_file.name, statement, self.identity, detail
                ) from None
            hint = run_session.lock_hint(failure.error)
            raise sql_messages.file_failed(
                sql_file.name, statement, self.identity, detail, hint
            ) from None
        except exc.DBAPIError as error:  # the COMMIT itself
            if not sql_errors.connection_lost(error):
                raise
            raise sql_messages.lost_at_commit(
                sql_file.name, self.identity, self._text(error)
            ) from None

    # ------------------------------------------------------------------ statement by statement

    def _statement_by_statement(
        self,
        migration: Migration,
        sql_file: SqlFile,
        plan: sql_file_modes.FilePlan,
        direction: run_request.Direction,
        started: float,
    ) -> None:
        statements = list(plan.statements)
        self._record_started(migration, sql_file, direction)
        try:
            with _autocommit(self.connection):
                self._execute(statements, sql_file)
        except _StatementError as failure:
            self._stopped(migration, sql_file, statements, failure, direction)
        with (
            sql_bookkeeping.own_query(
                f"record {sql_file.name} as done in {self.shown}", self.identity, self.url
            ),
            self.connection.begin(),
        ):
            self._record_done(migration, direction, started)

    def _stopped(
        self,
        migration: Migration,
        sql_file: SqlFile,
        statements: list[sqlfiles.Statement],
        failure: _StatementError,
        direction: run_request.Direction,
    ) -> None:
        index, failed = failure.index, statements[failure.index]
        ran = [s.line for s in statements[:index]]
        ran_text = f"{index} statement(s) ran (starting at line(s) {_lines(ran)})"
        if sql_errors.connection_lost(failure.error):
            raise errors.DatabaseUnavailable(
                f"the connection to {self.identity} was lost while {sql_file.name} line "
                f"{failed.line} ran without a transaction: {self._text(failure.error)}. "
                f"{ran_text if index else 'No statement before it ran'}; whether the statement "
                f"at line {failed.line} took effect is unknown. Lockstep recorded "
                f"{sql_file.name} as stopped part-way: once the database is reachable, the next "
                f"run says exactly what to check and repair."
            ) from None
        if index == 0:
            with (
                sql_bookkeeping.own_query(
                    f"clear the start of {sql_file.name} in {self.shown}",
                    self.identity,
                    self.url,
                ),
                self.connection.begin(),
            ):
                self._forget_start(migration, direction)
            raise errors.MigrationFailed(
                f"{sql_file.name} failed at line {failed.line} on {self.identity}: "
                f"{self._text(failure.error)} (statement: {failed.shortened(_STATEMENT_CHARS)}). "
                f"It was the file's first statement, so nothing of the file ran: the database "
                f"is as before this file. Fix the file and run again."
                f"{run_session.lock_hint(failure.error)}",
                file=sql_file.name,
                line=failed.line,
            ) from None
        not_run = statements[index + 1 :]
        skipped = (
            f"; the {len(not_run)} statement(s) after it (line(s) "
            f"{_lines([s.line for s in not_run])}) did not run"
            if not_run
            else ""
        )
        why = (
            "which cannot roll back DDL"
            if self.identity.family == "mysql"
            else "where the file ran without a transaction"
        )
        undo = " (while going down)" if direction == "down" else ""
        raise errors.PartiallyApplied(
            f"{sql_file.name}{undo} was only partly applied to {self.identity}, {why}: "
            f"{ran_text}; the statement at line {failed.line} failed: "
            f"{self._text(failure.error)} (statement: {failed.shortened(_STATEMENT_CHARS)})"
            f"{skipped}. Lockstep recorded version {migration.version} as failed and will "
            f"refuse to run until a person finishes or undoes that file's statements by hand, "
            f"then deletes its row: DELETE FROM {self.shown} WHERE version = "
            f"'{migration.version}'.{run_session.lock_hint(failure.error)}",
            version=migration.version,
            ran_lines=ran,
            failed_line=failed.line,
        ) from None

    # ------------------------------------------------------------------ shared

    def _execute(self, statements: list[sqlfiles.Statement], progress_of: SqlFile | None) -> None:
        if progress_of is None and sql_pipeline.can_pipeline(self.connection, statements):
            sql_pipeline.execute(self.connection, statements)  # in the file's transaction
            return
        for index, statement in enumerate(statements):
            try:
                # Statement by statement, each in a "transaction" that is autocommit on the
                # server, so Lockstep's progress records can begin and commit between them.
                with (
                    self.connection.begin() if progress_of is not None else contextlib.nullcontext()
                ):
                    # no_parameters: the text goes to the server as written, so a
                    # '%' or ':name' in the SQL is not taken for a bind parameter.
                    self.connection.exec_driver_sql(
                        statement.text, execution_options={"no_parameters": True}
                    )
            except exc.DBAPIError as error:
                raise _StatementError(index, error) from error
            if progress_of is not None:
                self._record_progress(progress_of, index + 1)

    def _where(self, migration: Migration) -> sa.ColumnElement[bool]:
        return self.table.c.version == migration.version

    def _record_started(
        self, migration: Migration, sql_file: SqlFile, direction: run_request.Direction
    ) -> None:
        progress = {"success": False, "running_file": sql_file.name, "statements_done": 0}
        what = f"record {sql_file.name} as started in {self.shown}"
        with sql_bookkeeping.own_query(what, self.identity, self.url), self.connection.begin():
            if direction == "up":
                self.connection.execute(
                    sa.insert(self.table).values({**self._row(migration, 0), **progress})
                )
            else:
                self.connection.execute(
                    sa.update(self.table).where(self._where(migration)).values(**progress)
                )

    def _record_progress(self, sql_file: SqlFile, done: int) -> None:
        what = f"record the progress of {sql_file.name} in {self.shown}"
        with sql_bookkeeping.own_query(what, self.identity, self.url), self.connection.begin():
            self.connection.execute(
                sa.update(self.table)
                .where(self.table.c.running_file == sql_file.name)
                .values(statements_done=done)
            )

    def _forget_start(self, migration: Migration, direction: run_request.Direction) -> None:
        if direction == "up":
            self.connection.execute(sa.delete(self.table).where(self._where(migration)))
        else:
            self.connection.execute(
                sa.update(self.table)
                .where(self._where(migration))
                .values(success=True, running_file=None, statements_done=None)
            )

    def _record_done(
        self, migration: Migration, direction: run_request.Direction, started: float
    ) -> None:
        """Down: the version's row goes. Up: the row says applied, in one statement, so a
        kill never leaves a finished file without its row."""
        where = self._where(migration)
        if direction == "down":
            self.connection.execute(sa.delete(self.table).where(where))
            return
        row = self._row(migration, _elapsed_ms(started))
        done = self.connection.execute(
            sa.update(self.table)
            .where(where)
            .values(**row, running_file=None, statements_done=None)
        )
        if done.rowcount == 0:
            self.connection.execute(sa.insert(self.table).values(**row))

    def _row(self, migration: Migration, elapsed_ms: int) -> dict[str, object]:
        return {
            "version": migration.version,
            "description": migration.description[:200],
            "checksum": migration.up.checksum,
            "applied_at": sql_bookkeeping.now(),
            "execution_ms": elapsed_ms,
            "success": True,
        }

    def _text(self, error: exc.DBAPIError) -> str:
        return run_session.db_error_text(error, self.url)


@contextlib.contextmanager
def _autocommit(connection: sa.Connection) -> Iterator[None]:
    """Run without a transaction; the connection's own mode comes back after.

    PostgreSQL by the driver's autocommit; SQLite, whose driver already leaves transactions
    to SQLAlchemy, by not sending the BEGIN (:data:`lockstep.database.NO_TRANSACTION`);
    MySQL/MariaDB migration connections are in autocommit already.
    """
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        yield
        return
    if connection.dialect.name == "sqlite":
        connection.execution_options(**{database.NO_TRANSACTION: True})
        try:
            yield
        finally:
            connection.execution_options(**{database.NO_TRANSACTION: False})
        return
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield
    finally:
        connection.execution_options(isolation_level=connection.default_isolation_level)


def _lines(lines: list[int]) -> str:
    return run_session.short_list([str(line) for line in lines])


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
