"""Read the revision a database is at, from the migration tool's own version table (I/O)."""

from __future__ import annotations

from lockstep import database, tools


def read_revision(tool: str, url: str) -> str | None:
    """The applied revision, or None when the tool's table is missing or empty."""
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return tools.get_adapter(tool).read_applied_revision(connection)
    finally:
        engine.dispose()
