"""What a run of versioned SQL files would do, decided before anything runs.

:func:`plan_sql` is pure: given the files and the history table's rows it picks the direction
and the files to run, and makes every refusal (a changed checksum, an unknown or half-applied
version, a forbidden downgrade) before the first statement. Free of SQLAlchemy: the
PostgreSQL fast path (:mod:`lockstep.pod.pg_run`) plans with it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lockstep import errors, sqlfiles
from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import run_request, sql_rows
from lockstep.sqlfiles import Migration, MigrationSet
from lockstep.tools import base as tool_base
from lockstep.tools import sql as sql_tool

HistoryRow = sql_rows.HistoryRow


@dataclass(frozen=True)
class SqlPlan:
    direction: run_request.Direction
    current: str | None
    target: str | None
    steps: tuple[Migration, ...]  # in the order they run


def resolve_sql_target(migration_set: MigrationSet, target: str) -> str | None:
    """The canonical version ``target`` names; None for "nothing applied"."""
    if not migration_set.migrations:
        raise errors.InvalidSource(
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
        raise errors.InvalidTarget(
            f"target {target!r} names no migration in {migration_set.directory}; known versions: "
            f"{sql_rows.short_list(migration_set.versions)} (or head, or 0/base for none)"
        )
    return found.version


def plan_sql(
    migration_set: MigrationSet,
    history: Sequence[HistoryRow],
    target: str | None,
    *,
    allow_downgrade: bool,
    identity: DatabaseIdentity,
    table: str = sql_tool.HISTORY_TABLE,
) -> SqlPlan:
    """Decide what to run (pure).  Every refusal happens here, before anything runs.

    ``table`` is the history table's name, for the repairs the refusals spell out.
    """
    _refuse_failed(history, identity, migration_set, table)
    applied = {row.version: row for row in history}
    _refuse_unknown_applied(migration_set, applied, identity, table)
    _refuse_changed(migration_set, applied, identity, table)
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
        raise errors.DowngradeForbidden(
            f"{identity} is at version {current} and the target {target or '0'} is lower: "
            f"reaching it would undo {sql_rows.short_list([m.version for m in steps])}. "
            f"Downgrades are "
            f"forbidden: set spec.downgrade to Allow to permit it, or set the target to "
            f"{current} or head."
        )
    below = [m.version for m in steps if applied[m.version].baselined]
    if below:
        raise errors.InvalidTarget(
            f"the target {target or '0'} lies below the baseline of {identity}: version(s) "
            f"{sql_rows.short_list(below)} were adopted by spec.baseline, never run, so "
            f"Lockstep does not undo them; set the target to {below[-1]} or above"
        )
    missing = [f"U{m.version}__*.sql (undoes {m.up.name})" for m in steps if m.down is None]
    if missing:
        raise errors.InvalidSource(
            f"cannot go down to {target or '0'} on {identity}: no undo file for "
            f"{sql_rows.short_list(missing)}; add the U files to the source, nothing was changed"
        )
    return SqlPlan("down", current, target, steps)


def _refuse_failed(
    history: Sequence[HistoryRow],
    identity: DatabaseIdentity,
    migration_set: MigrationSet,
    table: str,
) -> None:
    failed = [row for row in history if not row.success]
    if not failed:
        return
    row = failed[0]
    delete = f"DELETE FROM {table} WHERE version = '{row.version}'"
    progress = _progress(row, migration_set, identity)
    if progress is None:
        as_it_ran = (
            f" ({row.statements_done} statement(s) of {row.running_file} as it ran then "
            f"completed; the file has changed since)"
            if row.running_file and row.statements_done is not None
            else ""
        )
        raise errors.PartiallyApplied(
            f"version {row.version} ({row.description}) failed part-way on {identity}{as_it_ran} "
            f"at {row.applied_at or 'an earlier run'} and may be half applied, so Lockstep "
            f"will not run anything until a person repairs it: finish or undo that version's "
            f"statements by hand, then delete its history row ({delete}) and run again.",
            version=row.version,
        )
    name, done, statements = progress
    ran = [s.line for s in statements[:done]]
    ran_text = (
        f"{done} of its {len(statements)} statement(s) completed (line(s) "
        f"{sql_rows.short_list([str(line) for line in ran])})"
        if done
        else f"none of its {len(statements)} statement(s) completed"
    )
    stopped = ""
    if done < len(statements):
        stopped = (
            f"; the statement at line {statements[done].line} "
            f"({statements[done].shortened(80)}) did not complete: it failed, or the run was "
            f"stopped while it ran (then check whether it took effect)"
        )
        if "CONCURRENTLY" in statements[done].text.upper() and identity.family == "postgresql":
            stopped += (
                " (a CREATE INDEX or REINDEX CONCURRENTLY that did not finish leaves an INVALID "
                "index behind: drop it before finishing the file)"
            )
        rest = statements[done + 1 :]
        if rest:
            lines = sql_rows.short_list([str(s.line) for s in rest])
            stopped += f"; the statement(s) at line(s) {lines} did not run"
    going_down = name.startswith("U")
    repair = (
        f"finish the undo by hand and then delete its history row ({delete}), or redo what "
        f"the undo removed and then mark the version applied again (UPDATE "
        f"{table} SET success = true, running_file = NULL, statements_done = "
        f"NULL WHERE version = '{row.version}')"
        if going_down
        else f"finish the file's remaining statements or undo the completed ones by hand, "
        f"then delete its history row ({delete})"
    )
    raise errors.PartiallyApplied(
        f"{name} stopped part-way on {identity} at {row.applied_at or 'an earlier run'}: "
        f"{ran_text}{stopped}. Lockstep will not run anything until a person repairs it: "
        f"{repair}, and run again.",
        version=row.version,
        ran_lines=ran,
        failed_line=statements[done].line if done < len(statements) else None,
    )


def _progress(
    row: HistoryRow, migration_set: MigrationSet, identity: DatabaseIdentity
) -> tuple[str, int, list[sqlfiles.Statement]] | None:
    """The file that stopped, how many statements completed, and its statements as run."""
    if row.running_file is None or row.statements_done is None:
        return None
    migration = migration_set.find(row.version)
    if migration is None:
        return None
    if migration.up.name == row.running_file and migration.up.checksum != row.checksum:
        return None  # changed since it ran: its lines today are not the lines that ran
    for sql_file in (migration.up, migration.down):
        if sql_file is not None and sql_file.name == row.running_file:
            # Files that run statement by statement are never unwrapped: split as they ran.
            return sql_file.name, row.statements_done, sql_file.statements(identity.family)
    return None


def _refuse_unknown_applied(
    migration_set: MigrationSet,
    applied: dict[str, HistoryRow],
    identity: DatabaseIdentity,
    table: str,
) -> None:
    unknown = [version for version in applied if migration_set.find(version) is None]
    if unknown:
        raise errors.InvalidSource(
            f"{identity} has version(s) "
            f"{sql_rows.short_list(sorted(unknown, key=sqlfiles.version_key))} "
            f"applied, but {migration_set.directory} has no V file for them: the source is "
            f"older than the database, or a file was renamed. Restore the files (never delete "
            f"an applied migration); to forget a version, delete its row from "
            f"{table}."
        )


def _refuse_changed(
    migration_set: MigrationSet,
    applied: dict[str, HistoryRow],
    identity: DatabaseIdentity,
    table: str,
) -> None:
    for version, row in applied.items():
        migration = migration_set.find(version)
        if migration is not None and migration.up.checksum != row.checksum:
            raise errors.ChecksumMismatch(
                f"{migration.up.name} changed after it was applied to {identity} (recorded "
                f"checksum {row.checksum[:12]}..., file now {migration.up.checksum[:12]}...). "
                f"Applied migrations are never re-run: restore the file as it was and put the "
                f"change in a new V file; if the edit is harmless (a comment), update the "
                f"checksum of version {version} in {table} by hand."
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
        raise errors.InvalidSource(
            f"{sql_rows.short_list(skipped)} sorts below version {current}, "
            f"which is already applied: "
            f"Lockstep applies versions in order only. Rename the file(s) to a version "
            f"above {current}."
        )
