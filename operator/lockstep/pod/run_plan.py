"""The plan of a run: the SQL it would execute, classified, and hashed for approval.

A person may have to approve a migration before it runs (issue 9).  What they
approve is a *plan*: the SQL a run would execute against the database as it is
now, classified by :mod:`lockstep.classify` (additive or destructive), and
identified by a short hash.  ``lockstep plan`` renders it without changing
anything; ``lockstep run --plan-salt S --expect-plan H`` renders it again under
the migration lock and refuses to run when the hash is no longer ``H``: what
runs is what was approved, or nothing.

Rendering:

* tool ``sql``: the V files that would run (U files for a downgrade), as written.
* tool ``alembic``: Alembic's offline mode (``alembic upgrade a:b --sql``),
  split into one piece per revision on the ``-- Running upgrade`` markers.
  Scripts that cannot render offline (an env.py without offline support, a
  migration that reads data, batch mode on SQLite) make the plan
  *unavailable*: it then lists the revisions only and classifies as Unknown.

The hash covers the salt (the operator passes the spec hash), the direction,
both ends and every rendered file, so approving one plan never approves
another.  An unavailable plan hashes the revision scripts' source instead.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from lockstep import classify, database, errors, url_secrets
from lockstep.classify import SqlFile
from lockstep.classify.findings import Questions
from lockstep.classify.live import LiveSchema
from lockstep.contract import plan_budget
from lockstep.contract import report as wire
from lockstep.database import DatabaseIdentity
from lockstep.pod import live_schema, plan_model, run_session, runner
from lockstep.pod.plan_model import (  # noqa: F401 - the plan's names, also used from here
    DESTRUCTIVE_STATEMENT_CHARS,
    HASH_CHARS,
    IGNORED_TABLES,
    Classification,
    PendingWork,
    Plan,
    Rendered,
    _split_by_revision,
    plan_from_offline_sql,
    plan_hash,
)
from lockstep.pod.run_request import RunRequest
from lockstep.pod.runner import AlembicSource, CheckContext, Source

log = logging.getLogger("lockstep.migration_plan")

_REASON_CHARS: Final = 300

# Alembic needs a dialect, not a server, to render SQL: no host, no credentials.
_OFFLINE_URLS: Final[Mapping[str, str]] = {
    "postgresql": "postgresql+psycopg://",
    "mysql": "mysql+pymysql://",
    "mariadb": "mariadb+pymysql://",
    "sqlite": "sqlite://",
}


class PlanChanged(errors.LockstepError):
    """The plan about to run is not the plan a person approved."""

    reason = "PlanChanged"

    def __init__(self, approved: str, plan: Plan) -> None:
        super().__init__(
            f"the plan changed since it was approved: approved {approved}, now {plan.hash}; "
            f"approve the new plan ({plan.summary()}). Nothing was changed."
        )
        self.approved = approved
        self.plan = plan


# --------------------------------------------------------------------------- the plan


def render_plan(request: RunRequest, *, salt: str) -> Plan:
    """The plan of ``request`` against the database as it is now.

    Read-only and lock-free: it reads which revision the database is at and
    changes nothing (not even Lockstep's history table), so anyone may run it
    at any time.  Raises the errors the run would raise (a bad source, a
    forbidden downgrade, an unreachable database).
    """
    identity = database.identity_from_url(request.database_url)
    source = runner.load_source(request)
    engine = database.make_engine(request.database_url)

    def read_live(questions: Questions) -> LiveSchema:
        with (
            run_session.database_errors(identity, request.database_url),
            database.connect(engine, request.database_url) as connection,
        ):
            return live_schema.read_all(connection, identity.engine, questions)

    try:
        with (
            run_session.database_errors(identity, request.database_url),
            database.connect(engine, request.database_url) as connection,
        ):
            pending = runner.pending_work(connection, source, request, identity)
        return plan_of(source, pending, identity, salt, request.database_url, read_live)
    finally:
        engine.dispose()


def plan_of(
    source: Source,
    pending: PendingWork,
    identity: DatabaseIdentity,
    salt: str,
    url: str,
    live: Callable[[Questions], LiveSchema] | None = None,
) -> Plan:
    """Render, classify and hash ``pending`` (``url`` only to scrub error text).

    ``live`` reads the live columns of existing tables and the facts the first pass asks
    about (sizes, CHECKs, duplicates), so findings are judged by the database as it is; the
    hash does not depend on them: the same SQL is the same plan, and an approval of it holds
    whatever the tables' sizes (see lockstep.classify.live).
    """
    rendered = _render(source, pending, identity, url)
    report = None
    if rendered.unavailable_reason is None:
        dialect = classify.dialect_for_engine(identity.engine)
        report = classify.classify(rendered.files, dialect, ignore_tables=IGNORED_TABLES)
        if live is not None:
            report = plan_model.reclassify(rendered.files, dialect, report, live)
    return Plan(
        hash=plan_hash(salt, pending, rendered.files),
        direction=pending.direction,
        current=pending.current,
        target=pending.target,
        migrations=tuple(sql_file.name for sql_file in rendered.files),
        report=report,
        unavailable_reason=rendered.unavailable_reason,
    )


def _render(source: Source, pending: PendingWork, identity: DatabaseIdentity, url: str) -> Rendered:
    if isinstance(source, AlembicSource):
        return _render_alembic(source, pending, identity, url)
    return Rendered(tuple(SqlFile(f.name, f.text) for f in pending.sql_files))


def _render_alembic(
    source: AlembicSource, pending: PendingWork, identity: DatabaseIdentity, url: str
) -> Rendered:
    if pending.direction == "none":
        return Rendered(())
    scripts = {rev: Path(str(source.script.get_revision(rev).path)) for rev in pending.revisions}
    try:
        text = _alembic_offline_sql(source.directory, pending, identity)
    except Exception as error:  # noqa: BLE001 - user code (env.py, revisions) may raise anything
        detail = url_secrets.scrub(f"{type(error).__name__}: {error}", url)
        reason = plan_budget.flat_clip(
            f"the Alembic scripts cannot render SQL offline: {detail}", _REASON_CHARS
        )
        log.info("plan unavailable: %s", reason)
        return Rendered(
            tuple(SqlFile(path.name, path.read_text()) for path in scripts.values()), reason
        )
    names = {revision: path.name for revision, path in scripts.items()}
    return Rendered(_split_by_revision(text, names))


def _alembic_offline_sql(directory: Path, pending: PendingWork, identity: DatabaseIdentity) -> str:
    """``alembic upgrade|downgrade <current>:<target> --sql``, captured."""
    from alembic import command as alembic_command  # tool alembic only: SQL plans need none

    from lockstep.pod import alembic_migration

    buffer = io.StringIO()
    config = alembic_migration.alembic_config(directory)
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", _OFFLINE_URLS[identity.engine])
    revisions = f"{pending.current or 'base'}:{pending.target or 'base'}"
    if pending.direction == "up":
        alembic_command.upgrade(config, revisions, sql=True)
    else:
        alembic_command.downgrade(config, revisions, sql=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the run's check


def plan_check(salt: str, expected: str | None) -> runner.Check:
    """A check for :func:`lockstep.pod.runner.run`: render the plan under the lock, log it,
    refuse with :class:`PlanChanged` when it is not the ``expected`` one, and put
    its compact form in the result (key ``plan``).

    A plan with nothing to do is never refused: running it changes nothing,
    approved or not.
    """
    approved = expected.strip().lower() if expected else None

    def check(context: CheckContext) -> Mapping[str, Any]:
        plan = plan_of(
            context.source, context.pending, context.identity, salt, context.request.database_url
        )
        log.info("%s", plan.summary())
        if approved is not None and plan.hash != approved and plan.direction != "none":
            raise PlanChanged(approved, plan)
        return {"plan": plan.compact(wire.HALF_BUDGET)}

    return check
