"""The history table's rows as the runner reads them, and list wording for its messages.

Free of SQLAlchemy and drivers, so that planning (:mod:`lockstep.pod.sql_planning`) and the
PostgreSQL fast path (:mod:`lockstep.pod.pg_run`) share them with the SQLAlchemy path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HistoryRow:
    version: str
    description: str
    checksum: str
    success: bool
    applied_at: datetime | None = None
    running_file: str | None = None  # set while (or after) a file ran statement by statement
    statements_done: int | None = None
    baselined: bool = False  # recorded by spec.baseline: adopted as applied, never run here


def short_list(items: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
