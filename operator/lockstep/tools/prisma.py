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

from lockstep import errors
from lockstep.tools import base

VERSION_TABLE: Final = "_prisma_migrations"


class PrismaAdapter(base.ToolAdapter):
    name: ClassVar[str] = "prisma"
    version_table: ClassVar[str] = VERSION_TABLE

    def upgrade_command(self, target: str) -> list[str]:
        if target.strip().lower() != "head":
            raise errors.TargetUnsupported(
                f"Prisma Migrate cannot stop at migration {target!r}: `prisma migrate deploy` "
                f"applies every migration in the image; set spec.target to head and ship an "
                f"image whose prisma/migrations folder ends at the migration you want"
            )
        return ["prisma", "migrate", "deploy"]

    def downgrade_command(self, target: str) -> list[str]:
        raise errors.DowngradeUnsupported(
            f"Prisma Migrate has no down migrations, so Lockstep cannot take the database down "
            f"to {target!r}; create a new migration that reverts the change (`prisma migrate "
            f"diff --from-schema-datasource ... --to-schema-datamodel ... --script` drafts it), "
            f"ship it in a new image and keep spec.target at head"
        )

    def status_command(self) -> list[str]:
        """Lists the migrations not yet applied (exit code 1 while any are pending)."""
        return ["prisma", "migrate", "status"]
