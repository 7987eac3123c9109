"""Plain versioned SQL files (``V1__init.sql`` / ``U1__init.sql``), run by Lockstep itself.

The history table's name and order live here; :mod:`lockstep.version_tables` defines the
table, which the runner writes and the operator reads.
"""

from __future__ import annotations

from typing import ClassVar, Final

from lockstep import sqlfiles
from lockstep.tools import base

HISTORY_TABLE: Final = "lockstep_schema_history"


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
