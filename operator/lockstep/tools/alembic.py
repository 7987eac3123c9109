"""Alembic: scripts from a ConfigMap run by Lockstep's runner through Alembic's Python API;
scripts baked into the user's image run with that image's own `alembic` command.

The user's ``env.py`` must use the connection Lockstep passes in, so that the
migration runs on the connection that has ``lock_timeout`` set (see
``tests/fixtures/alembic_basic/env.py`` for a complete example)::

    connection = context.config.attributes.get("connection")
    if connection is not None:  # run by Lockstep (or any caller that shares a connection)
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    else:
        ...  # the usual engine_from_config(...) branch
"""

from __future__ import annotations

from typing import ClassVar, Final

from lockstep.tools import base

VERSION_TABLE: Final = "alembic_version"


class AlembicAdapter(base.ToolAdapter):
    name: ClassVar[str] = "alembic"
    version_table: ClassVar[str] = VERSION_TABLE
    builtin: ClassVar[bool] = True

    # The commands for scripts in the user's image (with its alembic.ini in the working
    # directory); a ConfigMap source runs `lockstep run` instead (see lockstep.jobs).
    def upgrade_command(self, target: str) -> list[str]:
        return ["alembic", "upgrade", target]

    def downgrade_command(self, target: str) -> list[str]:
        return ["alembic", "downgrade", "base" if target == "0" else target]

    def offline_sql_commands(
        self, current: str, target: str, downgrade: bool
    ) -> list[base.OfflineSql] | None:
        """Alembic's offline mode: `alembic upgrade <from>:<to> --sql` prints the SQL.

        Revision hashes have no order: an upgrade to a target behind the database prints no
        revision at all, so the downgrade is tried next; if that fails too (nothing to do),
        the empty upgrade stands.
        """
        revisions = f"{self._offline_end(current)}:{self._offline_end(target)}"
        up = ["alembic", "upgrade", revisions, "--sql"]
        down = base.OfflineSql("down", ["alembic", "downgrade", revisions, "--sql"])
        if downgrade:
            return [down]
        return [
            base.OfflineSql("up", up, proof="-- Running upgrade"),
            down,
            base.OfflineSql("up", up),
        ]

    @staticmethod
    def _offline_end(revision: str) -> str:
        return "base" if revision in base.BASE_TARGETS else revision

    def order_key(self, revision: str) -> tuple[tuple[int, str], ...] | None:
        """Alembic revisions are hashes linked by down_revision: no order of their own."""
        return None
