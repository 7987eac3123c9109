"""What a run of versioned SQL files would do, decided before anything runs.

:func:`plan_sql` is pure: given the files and the history table's rows it picks the direction
and the files to run, and makes every refusal (a changed checksum, an unknown or half-applied
version, a forbidden downgrade) before the first statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from lockstep import errors, sqlfiles, version_tables
from lockstep.database import DatabaseIdentity
from lockstep.pod import run_request, run_session
from lockstep.sqlfiles import Migration, MigrationSet
from lockstep.tools import base as tool_base
from lockstep.tools import sql as sql_tool


@dataclass(frozen=True)
class HistoryRow:
    version: str
    description: str
    checksum: str
    success: bool
    applied_at: datetime | None = None


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
            f"{run_session.short_list(migration_set.versions)} (or head, or 0/base for none)"
        )
    return found.version


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
        raise errors.DowngradeForbidden(
            f"{identity} is at version {current} and the target {target or '0'} is lower: "
            f"reaching it would undo {run_session.short_list([m.version for m in steps])}. "
            f"Downgrades are "
            f"forbidden: set spec.downgrade to Allow to permit it, or set the target to "
            f"{current} or head."
        )
    missing = [f"U{m.version}__*.sql (undoes {m.up.name})" for m in steps if m.down is None]
    if missing:
        raise errors.InvalidSource(
            f"cannot go down to {target or '0'} on {identity}: no undo file for "
            f"{run_session.short_list(missing)}; add the U files to the source, nothing was changed"
        )
    return SqlPlan("down", current, target, steps)


def _refuse_failed(history: Sequence[HistoryRow], identity: DatabaseIdentity) -> None:
    failed = [row for row in history if not row.success]
    if failed:
        row = failed[0]
        raise errors.PartiallyApplied(
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
        raise errors.InvalidSource(
            f"{identity} has version(s) "
            f"{run_session.short_list(sorted(unknown, key=sqlfiles.version_key))} "
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
            raise errors.ChecksumMismatch(
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
        raise errors.InvalidSource(
            f"{run_session.short_list(skipped)} sorts below version {current}, "
            f"which is already applied: "
            f"Lockstep applies versions in order only. Rename the file(s) to a version "
            f"above {current}."
        )


def read_history(connection: sa.Connection) -> list[HistoryRow]:
    table = version_tables.sql_history
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
