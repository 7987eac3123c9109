"""Knex migrations, run from the user's image with the ``knex`` CLI.

The image's ``knexfile`` reads the connection from ``process.env.DATABASE_URL``
(see ``examples/knex-postgresql``); ``knex`` must be on the image's ``PATH``
(``ENV PATH=/app/node_modules/.bin:$PATH``) or ``spec.command`` says how to run it.

Knex can go to the newest migration (``migrate:latest``) and undo everything
(``migrate:rollback --all``), but has no "up to X" or "down to X": it only
moves one migration at a time (``migrate:up`` / ``migrate:down``).  For a named
target the Job runs a short shell loop that takes single steps until
``migrate:list`` shows the target as the newest applied migration, and fails
without changing anything when the target is not a migration Knex knows.

Revisions are migration file names exactly as Knex records them in
``knex_migrations.name`` (``20240102120000_add_email.js``); the applied one is
the newest row by ``id``, i.e. the last migration run.
"""

from __future__ import annotations

from typing import ClassVar, Final

from lockstep import errors
from lockstep.tools import base

VERSION_TABLE: Final = "knex_migrations"

# `section Completed|Pending "$list"`: the names `knex migrate:list` prints under
# one heading, in the order Knex applied (or would apply) them.
_SECTION: Final = """
fail() { printf 'lockstep: %s\\n' "$*" >&2; exit 1; }
section() {
  printf '%s\\n' "$2" | awk -v want="$1" '
    /Completed Migration/ { on = (want == "Completed"); next }
    /Pending Migration/ { on = (want == "Pending"); next }
    on && NF { print $1 }'
}
"""
_UP_TO: Final = (
    "set -eu\n"
    + _SECTION
    + """
target=$1
while :; do
  list=$(knex migrate:list)
  if section Completed "$list" | grep -qxF -- "$target"; then exit 0; fi
  if ! section Pending "$list" | grep -qxF -- "$target"; then
    fail "$target is not a Knex migration of this image;" \\
      "name a file of the migrations directory (knex migrate:list shows them)"
  fi
  knex migrate:up
done
"""
)
_DOWN_TO: Final = (
    "set -eu\n"
    + _SECTION
    + """
target=$1
while :; do
  list=$(knex migrate:list)
  if [ "$(section Completed "$list" | tail -n 1)" = "$target" ]; then exit 0; fi
  if ! section Completed "$list" | grep -qxF -- "$target"; then
    fail "Knex migration $target is not applied, so the database cannot go back to it;" \\
      "knex migrate:list shows the applied ones"
  fi
  knex migrate:down
done
"""
)


def _shell(script: str, *args: str) -> list[str]:
    # Arguments travel as "$1"...; never inside the script, so they cannot change it.
    return ["sh", "-c", script, "knex", *args]


class KnexAdapter(base.ToolAdapter):
    name: ClassVar[str] = "knex"
    version_table: ClassVar[str] = VERSION_TABLE

    def upgrade_command(self, target: str) -> list[str]:
        cleaned = target.strip()
        if cleaned.lower() == "head":
            return ["knex", "migrate:latest"]
        return _shell(_UP_TO, cleaned)

    def downgrade_command(self, target: str) -> list[str]:
        cleaned = target.strip()
        if cleaned.lower() in base.BASE_TARGETS:
            return ["knex", "migrate:rollback", "--all"]
        if cleaned.lower() == "head":
            raise errors.DowngradeUnsupported(
                "a downgrade needs the Knex migration to go back to (or base), not head"
            )
        return _shell(_DOWN_TO, cleaned)

    def status_command(self) -> list[str]:
        """Lists completed and pending migrations ("Found N Pending Migration file/files")."""
        return ["knex", "migrate:list"]
