"""Django migrations, run from the user's image with ``python manage.py migrate``.

The project's settings read the database from ``DATABASE_URL`` (see
``examples/django-postgresql``); the Job runs in the directory holding
``manage.py`` (the image's ``WORKDIR`` or ``spec.workingDir``).

Django versions each app separately, so a revision is a set of per-app
positions.  Lockstep writes it as ``app:migration`` pairs, one per app that has
migrations applied, sorted by app and joined by commas::

    auth:0012_alter_user_first_name_max_length,contenttypes:0002_remove_content_type_name,shop:0002_add_email

Each pair is the app's newest applied migration (highest ``id`` in
``django_migrations``: Django applies an app's migrations in dependency order
and deletes the rows of the ones it unapplies).  The string is stable, and
:func:`parse_revision` turns it back into a mapping, so the operator can ask
"is ``shop`` at ``0002_add_email``?" with ``parse_revision(applied)["shop"]``.

Targets: ``head`` (every app to its latest), ``app`` (one app to its latest),
``app:migration`` (one app to that migration, forwards or backwards: Django's
``migrate app migration`` does both) and ``app:zero`` (unapply the whole app).
"""

from __future__ import annotations

from typing import ClassVar, Final

from lockstep import errors
from lockstep.tools import base

VERSION_TABLE: Final = "django_migrations"
ZERO: Final = "zero"  # Django's name for "before the app's first migration"

_MIGRATE: Final = ("python", "manage.py", "migrate", "--noinput")


def format_revision(positions: dict[str, str]) -> str | None:
    """``{"shop": "0002_x", "auth": "0012_y"}`` -> ``"auth:0012_y,shop:0002_x"``."""
    return ",".join(f"{app}:{positions[app]}" for app in sorted(positions)) or None


def parse_revision(revision: str | None) -> dict[str, str]:
    """The inverse of :func:`format_revision`."""
    if not revision:
        return {}
    pairs = (part.split(":", 1) for part in revision.split(",") if ":" in part)
    return {app.strip(): name.strip() for app, name in pairs}


def split_target(target: str) -> tuple[str, str | None]:
    """``"shop:0002_x"`` -> ``("shop", "0002_x")``; ``"shop"`` -> ``("shop", None)``."""
    app, _, name = target.strip().partition(":")
    return app.strip(), (name.strip() or None)


class DjangoAdapter(base.ToolAdapter):
    name: ClassVar[str] = "django"
    version_table: ClassVar[str] = VERSION_TABLE

    def upgrade_command(self, target: str) -> list[str]:
        if target.strip().lower() == "head":
            return list(_MIGRATE)
        app, migration = split_target(target)
        return [*_MIGRATE, app] if migration is None else [*_MIGRATE, app, migration]

    def base_revision(self, target: str) -> str:
        """Django unapplies one app at a time: "nothing applied" is ``<app>:zero``."""
        app, migration = split_target(target)
        return f"{app}:{ZERO}" if migration is not None else "base"

    def downgrade_command(self, target: str) -> list[str]:
        app, migration = split_target(target)
        if migration is None:
            # "head", "base", or a bare app: none of them says where to go back to.
            raise errors.DowngradeUnsupported(
                f"a Django downgrade needs a target of the form app:migration (or app:{ZERO} "
                f"to unapply an app), not {target!r}; Django migrates one app at a time"
            )
        return [*_MIGRATE, app, migration]

    def status_command(self) -> list[str]:
        """The migration plan; ``[ ]`` lines are pending, ``[X]`` applied."""
        return ["python", "manage.py", "showmigrations", "--plan"]
