"""The interface every migration tool adapter implements.

An adapter knows how to run its tool in a migration Job (the commands) and
where the tool records what it applied (the version table).  Adapters are
pure: :mod:`lockstep.version_tables` reads the version tables.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from lockstep.contract import migration_args

# Where the Job mounts a built-in source (the ConfigMap) for Lockstep's own runner.
BUILTIN_SOURCE_DIR: Final = "/migrations"


# Where a Job puts the tool's own variables converted from DATABASE_URL (see `url_format`):
# a memory-backed emptyDir shared by the `lockstep-env` init container and the migrate container.
ENV_DIR: Final = "/lockstep"
ENV_FILE: Final = f"{ENV_DIR}/env"

# Targets that mean "below the first migration": every migration reverted.
BASE_TARGETS: Final = frozenset({"base", "0"})


@dataclass(frozen=True)
class OfflineSql:
    """One way to print a run's SQL: its direction ("up", "down"), the command, and a fixed
    string the output must contain to count (None: any output counts)."""

    direction: str
    command: list[str]
    proof: str | None = None


class ToolAdapter(abc.ABC):
    """One migration tool.

    ``name`` is the value of ``spec.tool``; ``version_table`` the table in
    which the tool records applied migrations.  ``builtin`` adapters run
    through ``lockstep run`` in Lockstep's image; the others run the tool that
    ships in the user's image.
    """

    name: ClassVar[str]
    version_table: ClassVar[str]
    builtin: ClassVar[bool] = False
    # Set when the tool cannot take DATABASE_URL as it is: the Job then converts it in an init
    # container (`lockstep dburl --format <url_format>`) into an env file the command sources.
    url_format: ClassVar[str | None] = None

    @abc.abstractmethod
    def upgrade_command(self, target: str) -> list[str]:
        """The container command that brings the database up to ``target``."""

    @abc.abstractmethod
    def downgrade_command(self, target: str) -> list[str]:
        """The container command that brings the database down to ``target``.

        Raises :class:`lockstep.errors.DowngradeUnsupported` when the tool cannot.
        """

    def base_revision(self, target: str) -> str:
        """How the downgrade command names "nothing applied", for a run towards ``target``."""
        return "base"

    def offline_sql_commands(
        self, current: str, target: str, downgrade: bool
    ) -> list[OfflineSql] | None:
        """Commands that print, without a database, the SQL of going from current to target.

        Tried in order until one succeeds (and prints its `proof`, when it has one): a tool whose
        revisions have no order of their own may only find out by trying that the target lies
        behind. None when the tool cannot print SQL (most tools run their migrations as code).
        """
        return None

    def order_key(self, revision: str) -> tuple[tuple[int, str], ...] | None:
        """A sort key that orders revisions by age, or None when they have no order of their own.

        Version numbers (1, 1.10), timestamped names (20240102_x.js) and Django's numbered
        migrations (shop:0002_x) sort naturally: digit runs compare as numbers.
        """
        return tuple(
            (int(part), "") if part.isdigit() else (-1, part)
            for part in re.split(r"(\d+)", revision.strip())
            if part
        )


def builtin_run_command(tool: str, target: str, *, downgrade: bool) -> list[str]:
    """``lockstep run`` for the built-in runner, reading the source from the Job's mount."""
    run = migration_args.RunArgs(
        tool=tool, source=Path(BUILTIN_SOURCE_DIR), target=target, allow_downgrade=downgrade
    )
    return list(run.to_argv())
