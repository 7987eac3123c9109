"""Sequelize migrations, run from the user's image with ``sequelize-cli``.

The image's Sequelize config reads the URL Lockstep passes in
(``{"use_env_variable": "DATABASE_URL"}``, see ``examples/sequelize-postgresql``);
``sequelize-cli`` must be on the image's ``PATH`` or ``spec.command`` says how to
run it.

Up: ``db:migrate`` (head) or ``db:migrate --to X``, which stops after X.  The
Job checks first that X is a migration of the image: for an unknown name
sequelize-cli reports success without doing anything.

Down: ``db:migrate:undo:all`` (base).  ``db:migrate:undo:all --to X`` would undo
X too, and which migration comes after X is only known inside the image, so
for a named target the Job undoes one migration at a time (``db:migrate:undo``)
until ``db:migrate:status`` shows X as the newest applied.

``SequelizeMeta`` has a single ``name`` column and no order of its own;
sequelize-cli applies migrations in file-name order, so the applied revision is
the greatest name (``20240102120000-add-email.js``).
"""

from __future__ import annotations

from typing import ClassVar, Final

from lockstep import errors
from lockstep.tools import base

VERSION_TABLE: Final = "SequelizeMeta"

# `db:migrate:status` prints one "up NAME" / "down NAME" line per migration, in
# file-name order, after a banner that never starts with "up" or "down".
_STATUS: Final = """
fail() { printf 'lockstep: %s\\n' "$*" >&2; exit 1; }
state() {
  printf '%s\\n' "$2" | awk -v want="$1" '$1 == want { print $2 }'
}
"""
_UP_TO: Final = (
    "set -eu\n"
    + _STATUS
    + """
target=$1
status=$(sequelize-cli db:migrate:status)
if state up "$status" | grep -qxF -- "$target"; then
  printf 'lockstep: %s is already applied\\n' "$target"
  exit 0
fi
if ! state down "$status" | grep -qxF -- "$target"; then
  fail "$target is not a Sequelize migration of this image; name a file of the" \\
    "migrations folder (sequelize-cli db:migrate:status lists them)"
fi
exec sequelize-cli db:migrate --to "$target"
"""
)
_DOWN_TO: Final = (
    "set -eu\n"
    + _STATUS
    + """
target=$1
while :; do
  status=$(sequelize-cli db:migrate:status)
  if [ "$(state up "$status" | tail -n 1)" = "$target" ]; then exit 0; fi
  if ! state up "$status" | grep -qxF -- "$target"; then
    fail "Sequelize migration $target is not applied, so the database cannot go back" \\
      "to it; sequelize-cli db:migrate:status lists the applied ones"
  fi
  sequelize-cli db:migrate:undo
done
"""
)


def _shell(script: str, *args: str) -> list[str]:
    # Arguments travel as "$1"...; never inside the script, so they cannot change it.
    return ["sh", "-c", script, "sequelize", *args]


class SequelizeAdapter(base.ToolAdapter):
    name: ClassVar[str] = "sequelize"
    version_table: ClassVar[str] = VERSION_TABLE

    def upgrade_command(self, target: str) -> list[str]:
        cleaned = target.strip()
        if cleaned.lower() == "head":
            return ["sequelize-cli", "db:migrate"]
        return _shell(_UP_TO, cleaned)

    def downgrade_command(self, target: str) -> list[str]:
        cleaned = target.strip()
        if cleaned.lower() in base.BASE_TARGETS:
            return ["sequelize-cli", "db:migrate:undo:all"]
        if cleaned.lower() == "head":
            raise errors.DowngradeUnsupported(
                "a downgrade needs the Sequelize migration to go back to (or base), not head"
            )
        return _shell(_DOWN_TO, cleaned)

    def status_command(self) -> list[str]:
        """One "up NAME" / "down NAME" line per migration; "down" ones are pending."""
        return ["sequelize-cli", "db:migrate:status"]
