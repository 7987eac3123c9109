"""Alembic scripts, run through Alembic's Python API on the connection Lockstep opened.

The user's ``env.py`` picks the connection up from ``config.attributes["connection"]`` (see
:mod:`lockstep.tools.alembic`). The scripts are loaded and checked before the lock is taken;
the direction and the revisions that run are decided along one line of history.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import exc

from lockstep import constants, database, errors, url_secrets
from lockstep.database import DatabaseIdentity
from lockstep.pod import fence, run_request, run_session, sql_errors
from lockstep.tools import base as tool_base

log = logging.getLogger("lockstep.runner")


ALEMBIC_SUPPORT_FILES: Final = frozenset({"env.py", "script.py.mako", "alembic.ini"})


def alembic_config(
    source_dir: Path, connection: sa.Connection | None = None, url: str | None = None
) -> AlembicConfig:
    """Alembic's configuration for ``source_dir``; without a connection, for offline rendering.

    ``url`` becomes ``sqlalchemy.url``, which the ``env.py`` that ``alembic init`` writes reads
    (``engine_from_config(config.get_section(...), prefix="sqlalchemy.")``): a user's
    unmodified env.py then connects by itself, tagged as a migration connection and with
    bounded connect and read waits; an env.py written for Lockstep uses the connection.
    """
    config = AlembicConfig()
    if url is not None:
        # configparser interpolates '%': a percent-encoded password must reach the driver intact.
        config.set_main_option("sqlalchemy.url", _env_py_url(url).replace("%", "%%"))
    config.set_main_option("script_location", str(source_dir))
    flat = _flat_versions(source_dir)
    if flat is not None:
        # One path, split on the OS separator (the legacy default splits on spaces).
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(flat))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _env_py_url(url: str) -> str:
    driven = database.driver_url(url)
    family = database.identity_from_url(url).family
    extra: dict[str, str] = {}
    if family == "postgresql":
        extra = {
            "application_name": constants.MIGRATION_APPLICATION_NAME,
            "connect_timeout": str(database.CONNECT_TIMEOUT_SECONDS),
        }
    elif family == "mysql":
        extra = {"connect_timeout": str(database.CONNECT_TIMEOUT_SECONDS)}
    extra = {key: value for key, value in extra.items() if key not in driven.query}
    return driven.update_query_dict(extra).render_as_string(hide_password=False)


@functools.cache
def _flat_versions(source_dir: Path) -> Path | None:
    """A `versions/` directory for a flat script directory, such as a mounted ConfigMap.

    ConfigMap keys cannot contain `/`, so env.py and the revision files arrive side by side.
    Alembic wants the revisions in their own directory: copy them into a temporary one (the Job
    mounts an emptyDir on /tmp; the root filesystem is read-only).
    """
    if (source_dir / "versions").is_dir():
        return None
    revisions = [
        path
        for path in sorted(source_dir.glob("*.py"))
        if path.name not in ALEMBIC_SUPPORT_FILES and not path.name.startswith(".")
    ]
    target = Path(tempfile.mkdtemp(prefix="lockstep-alembic-versions-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for path in revisions:
        shutil.copyfile(path, target / path.name)
    return target


def load_script(source_dir: Path) -> ScriptDirectory:
    """Load and check the scripts (before the lock: errors here need no database)."""
    if not (source_dir / "env.py").is_file():
        raise errors.InvalidSource(
            f"{source_dir} is not an Alembic script directory: env.py is missing "
            f"(expected env.py and revision files, in versions/ or beside env.py)"
        )
    try:
        script = ScriptDirectory.from_config(alembic_config(source_dir))
        heads = script.get_heads()
    except Exception as error:  # noqa: BLE001 - user code: any exception means a bad source
        raise errors.InvalidSource(
            f"cannot load the Alembic scripts in {source_dir}: {type(error).__name__}: {error}"
        ) from None
    if len(heads) > 1:
        raise errors.InvalidSource(
            f"the Alembic scripts in {source_dir} have {len(heads)} heads ({', '.join(heads)}); "
            f"merge them (alembic merge heads) so there is one line of history"
        )
    return script


def version_table_options(request: run_request.RunRequest) -> dict[str, str]:
    """``context.configure`` options for spec.versionTable (empty: Alembic's alembic_version).

    Lockstep reads the table with them, and hands them to the user's env.py in
    ``config.attributes`` (and ``$LOCKSTEP_VERSION_TABLE``), which env.py passes on.
    """
    options = {}
    if request.version_table:
        options["version_table"] = request.version_table
    if request.version_table_schema:
        options["version_table_schema"] = request.version_table_schema
    return options


def current_revision(
    connection: sa.Connection, identity: DatabaseIdentity, options: dict[str, str] | None = None
) -> str | None:
    with connection.begin():
        context = MigrationContext.configure(connection=connection, opts=dict(options or {}))
        heads = context.get_current_heads()
    if len(heads) > 1:
        raise errors.InvalidSource(
            f"{identity} has several Alembic heads applied ({', '.join(heads)}); Lockstep "
            f"migrates a single line of history: merge the branches first"
        )
    return heads[0] if heads else None


def resolve_target(script: ScriptDirectory, target: str) -> str | None:
    cleaned = target.strip()
    if cleaned.lower() == "head":
        heads = script.get_heads()
        return heads[0] if heads else None
    if cleaned.lower() in tool_base.BASE_TARGETS:
        return None
    try:
        return script.get_revision(cleaned).revision
    except Exception:  # noqa: BLE001 - Alembic raises several kinds for "not found"
        known = [s.revision for s in script.walk_revisions()]
        raise errors.InvalidTarget(
            f"target {target!r} names no Alembic revision in {script.dir}; known revisions "
            f"(newest first): {run_session.short_list(known)} (or head, or base)"
        ) from None


def _down_revisions(revision: Script) -> tuple[str, ...]:
    down = revision.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _ancestry(script: ScriptDirectory, revision: str | None) -> set[str]:
    """``revision`` and every revision below it."""
    seen: set[str] = set()
    pending = [revision] if revision else []
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(_down_revisions(script.get_revision(current)))
    return seen


def plan_alembic(
    script: ScriptDirectory, current: str | None, target: str | None, identity: DatabaseIdentity
) -> tuple[run_request.Direction, list[str]]:
    """run_request.Direction and the revisions that will run, in order."""
    if current == target:
        return "none", []
    try:
        below_current = _ancestry(script, current)
    except Exception:  # noqa: BLE001 - Alembic's "no such revision"
        raise errors.InvalidSource(
            f"{identity} is at Alembic revision {current}, which is not in {script.dir}: the "
            f"scripts are older than the database; deploy the scripts that include {current}"
        ) from None
    below_target = _ancestry(script, target)
    newest_first = [s.revision for s in script.walk_revisions()]
    if target is None or target in below_current:
        return "down", [r for r in newest_first if r in below_current - below_target]
    if current is None or current in below_target:
        return "up", [r for r in reversed(newest_first) if r in below_target - below_current]
    raise errors.InvalidTarget(
        f"target {target} and the applied revision {current} of {identity} are on different "
        f"branches; Lockstep moves along one line of history only"
    )


def migrate(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    script: ScriptDirectory,
) -> run_request.Outcome:
    options = version_table_options(request)
    if request.owner:
        _claim(connection, identity, request, options)
    current = current_revision(connection, identity, options)
    target = resolve_target(script, request.target)
    direction, steps = plan_alembic(script, current, target, identity)
    if direction == "none":
        log.info("%s is at Alembic revision %s already: nothing to do", identity, current)
        return run_request.Outcome("none", current, current, [])
    if direction == "down":
        refuse_downgrade(request, identity, current, target, steps)
    config = alembic_config(request.source_dir, connection, request.database_url)
    config.attributes.update(options)
    log.info("migrating %s %s from %s to %s", identity, direction, current, target)
    try:
        with fence.mark_follows_new_connections(connection, identity):
            _run_scripts(config, script, direction, target or "base")
        if connection.in_transaction():
            connection.commit()
    except fence.FenceFailed:
        raise
    except Exception as error:  # noqa: BLE001 - user scripts may raise anything
        if isinstance(error, exc.DBAPIError) and sql_errors.connection_lost(error):
            raise _connection_lost(error, identity, request.database_url) from None
        if connection.in_transaction():
            connection.rollback()
        reached = current_revision(connection, identity, options)
        raise _alembic_failed(error, identity, request.database_url, current, reached) from None
    reached = current_revision(connection, identity, options)
    if reached != target and options:
        raise errors.InvalidSource(
            f"Alembic ran, but {_shown(options)} on {identity} is at {reached or 'base'}, not "
            f"{target or 'base'}: the env.py does not use spec.versionTable. Pass "
            f"version_table=config.attributes.get('version_table', 'alembic_version') and "
            f"version_table_schema=config.attributes.get('version_table_schema') to "
            f"context.configure (docs/existing-databases.md)"
        )
    return run_request.Outcome(direction, current, reached, steps)


def _run_scripts(
    config: AlembicConfig, script: ScriptDirectory, direction: str, revision: str
) -> None:
    """``alembic upgrade``/``downgrade`` (alembic.command) on the scripts loaded already.

    The commands load every revision file again (ScriptDirectory.from_config): for 200
    revisions that was a fifth of a run, most of what Lockstep added to ``alembic upgrade
    head`` (issue 21). The body of both commands for one online revision, with the loaded
    ``script`` (its revision map is kept once read).
    """

    def steps(rev: Any, _context: Any) -> Any:
        if direction == "up":
            return script._upgrade_revs(revision, rev)
        return script._downgrade_revs(revision, rev)

    with EnvironmentContext(
        config, script, fn=steps, as_sql=False, starting_rev=None, destination_rev=revision
    ):
        script.run_env()


def _claim(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    options: dict[str, str],
) -> None:
    """One DatabaseMigration per Alembic version table (see :mod:`lockstep.pod.history_owners`).

    Its modules (and the version tables' definitions they load) are imported for a run that
    claims, one with ``--owner``, only."""
    from lockstep.pod import history_owners, sql_bookkeeping

    url = request.database_url
    current = sql_bookkeeping.current_schema(connection, identity, url)
    schema = options.get("version_table_schema") or current
    table = options.get("version_table", "alembic_version")
    claim = history_owners.Claim(str(request.owner), request.tool, schema, table, current)
    history_owners.claim(connection, identity, url, claim)


def _shown(options: dict[str, str]) -> str:
    table = options.get("version_table", "alembic_version")
    schema = options.get("version_table_schema")
    return f"{schema}.{table}" if schema else table


def refuse_downgrade(
    request: run_request.RunRequest,
    identity: DatabaseIdentity,
    current: str | None,
    target: str | None,
    steps: Sequence[str],
) -> None:
    if not request.allow_downgrade:
        raise errors.DowngradeForbidden(
            f"{identity} is at Alembic revision {current} and the target {target or 'base'} is "
            f"below it: reaching it would undo {run_session.short_list(steps)}. "
            f"Downgrades are forbidden: set "
            f"spec.downgrade to Allow to permit it, or set the target to {current} or head."
        )


def _connection_lost(
    error: exc.DBAPIError, identity: DatabaseIdentity, url: str
) -> errors.DatabaseUnavailable:
    """Not the revision's fault: say what the server kept, and that a rerun may succeed."""
    kept = (
        "MySQL/MariaDB keep the DDL statements that completed before it (check the schema "
        "against the revision that was running before you run again)"
        if identity.family == "mysql"
        else "the server rolled back the open transaction of the lost connection"
    )
    return errors.DatabaseUnavailable(
        f"the connection to {identity} was lost while Alembic migrated: "
        f"{run_session.db_error_text(error, url)}; {kept}. Run again once the database is "
        f"reachable: Alembic resumes from the revision recorded in alembic_version."
    )


def _alembic_failed(
    error: Exception,
    identity: DatabaseIdentity,
    url: str,
    started_at: str | None,
    reached: str | None,
) -> errors.MigrationFailed:
    if isinstance(error, exc.DBAPIError):
        detail = run_session.db_error_text(error, url) + run_session.lock_hint(error)
    else:
        detail = url_secrets.scrub(f"{type(error).__name__}: {error}", url)[
            : run_session.DB_ERROR_CHARS
        ]
    where = (
        f"the database stays at revision {reached or 'base'}"
        if reached == started_at
        else f"the revisions before the failing one were applied: the database is now at "
        f"revision {reached or 'base'}"
    )
    mysql = (
        " MySQL/MariaDB cannot roll back DDL: statements of the failing revision that ran "
        "before the error stay applied; check the schema by hand."
        if identity.family == "mysql"
        else ""
    )
    return errors.MigrationFailed(
        f"Alembic migration failed on {identity}: {detail}; {where}.{mysql}"
    )
