"""spec.baseline for tool sql: adopt a database whose schema exists, at version N.

Flyway's ``baselineVersion`` with ``baselineOnMigrate``, for Lockstep's own runner: on a database
where this resource has no history yet, the files up to N are recorded as applied (``baselined``
rows: the file's checksum, no execution time) and never run; the files above N run as usual.
:func:`plan_baseline` is pure and makes every refusal before anything is written:

* the resource has a history that no baseline wrote: it was migrated by Lockstep already, and
  a baseline now would hide what really ran;
* it was baselined at another version: the history says N, the spec now says M;
* N names no file, or the target lies below N (files that never ran cannot be undone).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from lockstep import errors, sqlfiles
from lockstep.database import DatabaseIdentity
from lockstep.pod import run_session, sql_bookkeeping
from lockstep.sqlfiles import Migration, MigrationSet

HistoryRow = sql_bookkeeping.HistoryRow


def plan_baseline(
    migration_set: MigrationSet,
    history: Sequence[HistoryRow],
    version: str | None,
    target: str | None,
    *,
    identity: DatabaseIdentity,
    table: str,
) -> tuple[Migration, ...]:
    """The files to record as baselined now; () when there is nothing (more) to baseline."""
    if version is None:
        return ()
    baselined = [row.version for row in history if row.baselined]
    if baselined:
        at = max(baselined, key=sqlfiles.version_key)
        if sqlfiles.version_key(at) != sqlfiles.version_key(version):
            raise errors.BaselineRefused(
                f"{identity} was baselined at version {at} ({table}), but spec.baseline.version "
                f"is now {version}: a baseline is recorded once. Set spec.baseline.version back "
                f"to {at}, or remove spec.baseline (it has done its work)."
            )
        return ()
    if history:
        versions = run_session.short_list(sorted((r.version for r in history), key=_key))
        raise errors.BaselineRefused(
            f"spec.baseline adopts a database without a Lockstep history, but {table} on "
            f"{identity} already records version(s) {versions}: those ran through Lockstep, and "
            f"a baseline would hide that. Remove spec.baseline; nothing was changed."
        )
    found = migration_set.find(version)
    if found is None:
        raise errors.InvalidSource(
            f"spec.baseline.version {version} names no V{version}__*.sql file in "
            f"{migration_set.directory}: the baseline must be a file's version (known: "
            f"{run_session.short_list(migration_set.versions)})"
        )
    if target is None or sqlfiles.version_key(target) < found.key:
        raise errors.InvalidTarget(
            f"the target {target or '0'} lies below spec.baseline.version {version} on "
            f"{identity}: the files up to {version} are adopted, never run, so they cannot be "
            f"undone; set the target to {version} or above"
        )
    return tuple(m for m in migration_set.migrations if m.key <= found.key)


def baselined_rows(steps: Sequence[Migration], at: datetime) -> list[HistoryRow]:
    """The history rows that record ``steps`` as baselined (applied, not run)."""
    return [
        HistoryRow(m.version, m.description[:200], m.up.checksum, True, at, baselined=True)
        for m in steps
    ]


def record(connection: sa.Connection, table: sa.Table, rows: Sequence[HistoryRow]) -> None:
    """Insert the baselined rows (in the caller's transaction)."""
    connection.execute(
        table.insert(),
        [
            {
                "version": row.version,
                "description": row.description,
                "checksum": row.checksum,
                "applied_at": row.applied_at,
                "execution_ms": 0,
                "success": True,
                "baselined": True,
            }
            for row in rows
        ],
    )


def _key(version: str) -> sqlfiles.Version:
    return sqlfiles.version_key(version)
