"""Runs versioned SQL files on the migration connection and keeps the history table in step.

Each file runs in its own transaction where DDL is transactional (PostgreSQL, SQLite), so a
failed file leaves no trace. MySQL/MariaDB commit every DDL statement on their own: there a
file that fails part-way is recorded as failed (:class:`lockstep.errors.PartiallyApplied`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import errors, sqlfiles, version_tables
from lockstep.database import DatabaseIdentity
from lockstep.pod import run_request, run_session, sql_planning
from lockstep.sqlfiles import Migration, MigrationSet, SqlFile
from lockstep.tools import sql as sql_tool

log = logging.getLogger("lockstep.runner")

_STATEMENT_CHARS: Final = 160


def migrate_sql(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    migration_set: MigrationSet,
    target: str | None,
) -> run_request.Outcome:
    with connection.begin():
        version_tables.metadata.create_all(connection, checkfirst=True)
        history = sql_planning.read_history(connection)
    plan = sql_planning.plan_sql(
        migration_set,
        history,
        target,
        allow_downgrade=request.allow_downgrade,
        identity=identity,
    )
    if plan.direction == "none":
        log.info("%s is at version %s already: nothing to do", identity, plan.current or "0")
        return run_request.Outcome("none", plan.current, plan.current, [])
    runner = _SqlFileRunner(connection, identity, request.database_url)
    for migration in plan.steps:
        if plan.direction == "up":
            runner.apply(migration)
        else:
            runner.revert(migration)
    return run_request.Outcome(
        plan.direction, plan.current, plan.target, [m.version for m in plan.steps]
    )


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
        assert (
            migration.down is not None
        )  # sql_planning.plan_sql refuses a downgrade without U files
        sql_file = migration.down
        log.info(
            "reverting version %s with %s on %s", migration.version, sql_file.name, self.identity
        )
        started = time.monotonic()
        table = version_tables.sql_history
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
        direction: run_request.Direction,
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
            sa.insert(version_tables.sql_history).values(
                version=migration.version,
                description=migration.description[:200],
                checksum=migration.up.checksum,
                applied_at=datetime.now(UTC),
                execution_ms=elapsed_ms,
                success=success,
            )
        )

    def _failed(self, sql_file: SqlFile, failure: _StatementError) -> errors.MigrationFailed:
        statement = failure.statements[failure.index]
        rolled_back = (
            "Lockstep rolled the whole file back"
            if self.transactional
            else "it was the file's first statement, so nothing of the file ran"
        )
        return errors.MigrationFailed(
            f"{sql_file.name} failed at line {statement.line} on {self.identity}: "
            f"{run_session.db_error_text(failure.error, self.url)} (statement: "
            f"{statement.shortened(_STATEMENT_CHARS)}). {rolled_back}: the database is as "
            f"before this file. Fix the file and run again.{run_session.lock_hint(failure.error)}",
            file=sql_file.name,
            line=statement.line,
        )

    def _partial(
        self, sql_file: SqlFile, failure: _StatementError, direction: run_request.Direction
    ) -> errors.PartiallyApplied:
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
        return errors.PartiallyApplied(
            f"{sql_file.name}{undo} was only partly applied to {self.identity}, which cannot "
            f"roll back DDL: {index} statement(s) ran (starting at line(s) {ran}); the "
            f"statement at line {failed.line} failed: "
            f"{run_session.db_error_text(failure.error, self.url)} "
            f"(statement: {failed.shortened(_STATEMENT_CHARS)}){skipped}. Lockstep recorded "
            f"version {sql_file.version} as failed and will refuse to run until a person "
            f"finishes or undoes that file's statements by hand, then deletes its row: "
            f"DELETE FROM {sql_tool.HISTORY_TABLE} WHERE version = '{sql_file.version}'."
            f"{run_session.lock_hint(failure.error)}",
            version=sql_file.version,
            ran_lines=[s.line for s in statements[:index]],
            failed_line=failed.line,
        )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
