"""Plain versioned SQL files (``V1__init.sql`` / ``U1__init.sql``), run by Lockstep itself.

The history table is defined here, next to its reader, and used by the runner
to write it.
"""

from __future__ import annotations

from typing import ClassVar, Final

import sqlalchemy as sa

from lockstep import sqlfiles
from lockstep.tools import base

HISTORY_TABLE: Final = "lockstep_schema_history"

metadata = sa.MetaData()
# VARCHAR rather than TEXT: MySQL cannot index TEXT without a prefix length.
history = sa.Table(
    HISTORY_TABLE,
    metadata,
    sa.Column("version", sa.String(sqlfiles.MAX_VERSION_LENGTH), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("execution_ms", sa.Integer, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
)


def newest_version(versions: list[str]) -> str | None:
    """The highest version, compared numerically (``"10"`` beats ``"9"``)."""
    return max(versions, key=sqlfiles.version_key, default=None)


class SqlAdapter(base.ToolAdapter):
    name: ClassVar[str] = "sql"
    version_table: ClassVar[str] = HISTORY_TABLE
    builtin: ClassVar[bool] = True

    def upgrade_command(self, target: str) -> list[str]:
        return base.builtin_run_command(self.name, target, downgrade=False)

    def downgrade_command(self, target: str) -> list[str]:
        return base.builtin_run_command(self.name, target, downgrade=True)

    def read_applied_revision(self, connection: sa.Connection) -> str | None:
        """The newest successfully applied version (a failed one is not "applied")."""
        if not base.has_table(connection, HISTORY_TABLE):
            return None
        query = sa.select(history.c.version).where(history.c.success == sa.true())
        return newest_version(list(connection.execute(query).scalars()))
