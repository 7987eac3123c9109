"""Flyway (Community edition), run from the user's image.

Flyway cannot read a ``postgresql://user:pw@host/db`` URL: it wants a JDBC URL,
a user and a password.  The Job therefore runs ``lockstep dburl --format
flyway`` in an init container (Lockstep's image), which turns ``DATABASE_URL``
into ``FLYWAY_URL`` / ``FLYWAY_USER`` / ``FLYWAY_PASSWORD`` in :data:`ENV_FILE`
on a shared in-memory volume; the migrate container sources that file and
execs Flyway.  Flyway gives environment variables precedence over its config
files, so the image's own ``flyway.toml`` / ``flyway.conf`` (locations,
placeholders, ...) still applies while the database always comes from Lockstep.

The applied revision is the highest successful *versioned* migration in
``flyway_schema_history``: repeatable migrations (no version) and Flyway's own
schema-creation marker do not move it, and undo / delete rows take a version
back out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from lockstep import errors
from lockstep.tools import base

VERSION_TABLE: Final = "flyway_schema_history"
# Where the init container writes the converted URL; the Job builder mounts an
# emptyDir (medium: Memory) at ENV_DIR in both containers.
ENV_DIR: Final = base.ENV_DIR
ENV_FILE: Final = base.ENV_FILE
URL_FORMAT: Final = "flyway"

# `sh -c SCRIPT NAME ARGS...`: the target travels as an argument, never inside
# the script text, so no target value can change what the shell runs.
_SOURCE_ENV_AND_EXEC: Final = f'. {ENV_FILE} && exec flyway "$@"'
# Flyway 12 exits 0 after a failed migration when its connection dies mid-statement (it logs
# "Migration ... failed! Changes successfully rolled back." and carries on; found by
# tests/integration/test_external_tool_tags.py). So an upgrade validates after it migrates:
# `validate` exits 1 while a migration up to the target is still unapplied ("Detected resolved
# migration not applied to database"), and that line reaches the status through the log tail.
_SOURCE_ENV_MIGRATE_AND_VALIDATE: Final = (
    f'. {ENV_FILE} && flyway "$@" migrate && exec flyway "$@" validate'
)
# Rows that mark a version as no longer applied (Teams' undo, `flyway repair`).
_UNAPPLYING_TYPES: Final = ("UNDO_SQL", "UNDO_JDBC", "UNDO_SCRIPT", "DELETE")
# Flyway's "<< Flyway Schema Creation >>" marker carries version 0.
_MARKER_TYPES: Final = frozenset({"SCHEMA"})


@dataclass(frozen=True)
class HistoryRow:
    installed_rank: int
    version: str | None
    type: str
    success: bool


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Flyway's order: dot-separated numbers (``1.10`` after ``1.9``; ``1.0`` equals ``1``)."""
    parts = version.replace("_", ".").split(".")
    while len(parts) > 1 and parts[-1].strip("0") == "":
        parts.pop()
    # Non-numeric parts are not valid Flyway versions; sorting them first keeps this total.
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)


def current_version(rows: Iterable[HistoryRow]) -> str | None:
    """The version the history leaves the schema at, replaying it in installed order."""
    applied: dict[tuple[tuple[int, str], ...], str] = {}
    for row in sorted(rows, key=lambda r: r.installed_rank):
        if not row.success or row.version is None or row.type in _MARKER_TYPES:
            continue
        key = version_key(row.version)
        if row.type in _UNAPPLYING_TYPES:
            applied.pop(key, None)
        else:
            applied[key] = row.version
    return applied[max(applied)] if applied else None


def flyway_target(target: str) -> str:
    """Lockstep's ``head`` is Flyway's ``latest``; a version passes through."""
    cleaned = target.strip()
    return "latest" if cleaned.lower() == "head" else cleaned


class FlywayAdapter(base.ToolAdapter):
    name: ClassVar[str] = "flyway"
    version_table: ClassVar[str] = VERSION_TABLE
    # Tells the Job builder to add the `lockstep dburl --format flyway` init container.
    url_format: ClassVar[str | None] = URL_FORMAT

    def upgrade_command(self, target: str) -> list[str]:
        script = _SOURCE_ENV_MIGRATE_AND_VALIDATE
        return ["sh", "-c", script, "flyway", f"-target={flyway_target(target)}"]

    def downgrade_command(self, target: str) -> list[str]:
        raise errors.DowngradeUnsupported(
            f"Flyway Community cannot undo migrations, so Lockstep cannot take the database "
            f"down to {target!r}; write a new versioned migration that reverts the change "
            f"(e.g. V<next>__revert_<change>.sql), ship it in a new image and keep "
            f"spec.target at head (or at the new version)"
        )

    def status_command(self) -> list[str]:
        """Prints applied and pending migrations (``Pending`` rows) to the log."""
        return self._flyway("info")

    @staticmethod
    def _flyway(*args: str) -> list[str]:
        return ["sh", "-c", _SOURCE_ENV_AND_EXEC, "flyway", *args]
