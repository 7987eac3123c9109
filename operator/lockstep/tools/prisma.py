"""Prisma Migrate, run from the user's image with ``prisma migrate deploy``.

Prisma reads the database URL from its own config (``env("DATABASE_URL")`` in
``schema.prisma`` or ``prisma.config.ts``), so the Job's ``DATABASE_URL``
reaches it without conversion.

Prisma Migrate has neither down migrations nor "deploy up to X": ``deploy``
applies every migration folder in the image.  So the only upgrade target is
``head``, and a rollback is a new forward migration.

The applied revision is the name of the newest migration in
``_prisma_migrations`` that finished and was not rolled back
(``prisma migrate resolve --rolled-back``).  A row that started but never
finished is a failed migration: it blocks further deploys until resolved, and
it is not "applied".
"""

from __future__ import annotations

from typing import ClassVar, Final

import sqlalchemy as sa

from lockstep.tools import base

VERSION_TABLE: Final = "_prisma_migrations"

migrations = sa.table(
    VERSION_TABLE,
    sa.column("migration_name", sa.String),
    # Untyped: compared and sorted by the database only, whatever the engine stores.
    sa.column("finished_at"),
    sa.column("rolled_back_at"),
)


class PrismaAdapter(base.ToolAdapter):
    name: ClassVar[str] = "prisma"
    version_table: ClassVar[str] = VERSION_TABLE

    def upgrade_command(self, target: str) -> list[str]:
        if target.strip().lower() != "head":
            raise base.TargetUnsupported(
                f"Prisma Migrate cannot stop at migration {target!r}: `prisma migrate deploy` "
                f"applies every migration in the image; set spec.target to head and ship an "
                f"image whose prisma/migrations folder ends at the migration you want"
            )
        return ["prisma", "migrate", "deploy"]

    def downgrade_command(self, target: str) -> list[str]:
        raise base.DowngradeUnsupported(
            f"Prisma Migrate has no down migrations, so Lockstep cannot take the database down "
            f"to {target!r}; create a new migration that reverts the change (`prisma migrate "
            f"diff --from-schema-datasource ... --to-schema-datamodel ... --script` drafts it), "
            f"ship it in a new image and keep spec.target at head"
        )

    def status_command(self) -> list[str]:
        """Lists the migrations not yet applied (exit code 1 while any are pending)."""
        return ["prisma", "migrate", "status"]

    def read_applied_revision(self, connection: sa.Connection) -> str | None:
        if not base.has_table(connection, VERSION_TABLE):
            return None
        query = (
            sa.select(migrations.c.migration_name)
            .where(migrations.c.finished_at.is_not(None), migrations.c.rolled_back_at.is_(None))
            # Finish time first; the (timestamp-prefixed) name breaks ties within a clock tick.
            .order_by(migrations.c.finished_at.desc(), migrations.c.migration_name.desc())
            .limit(1)
        )
        name = connection.execute(query).scalar()
        return str(name) if name is not None else None
