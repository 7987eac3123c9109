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

import hashlib
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from alembic import command as alembic_command

from lockstep import classify, database, errors, url_secrets
from lockstep.classify import Finding, Report, SqlFile
from lockstep.contract import plan_budget
from lockstep.contract import report as wire
from lockstep.database import DatabaseIdentity
from lockstep.pod import alembic_migration, run_session, runner
from lockstep.pod.run_request import Direction, RunRequest
from lockstep.pod.runner import AlembicSource, CheckContext, PendingWork, Source
from lockstep.tools import sql as sql_tool

log = logging.getLogger("lockstep.migration_plan")

Classification = Literal["Additive", "Destructive", "Unknown"]

HASH_CHARS: Final = 16
# Bookkeeping tables of the tools: writing them is not a change a person approves.
IGNORED_TABLES: Final = frozenset({"alembic_version", sql_tool.HISTORY_TABLE})
DESTRUCTIVE_STATEMENT_CHARS: Final = 120
_REASON_CHARS: Final = 300
_DIRECTION_NAMES: Final[Mapping[Direction, str]] = {
    "up": "Upgrade",
    "down": "Downgrade",
    "none": "None",
}
# Alembic needs a dialect, not a server, to render SQL: no host, no credentials.
_OFFLINE_URLS: Final[Mapping[str, str]] = {
    "postgresql": "postgresql+psycopg://",
    "mysql": "mysql+pymysql://",
    "mariadb": "mariadb+pymysql://",
    "sqlite": "sqlite://",
}
# Alembic writes one such comment before each revision in offline mode.
_REVISION_MARKER = re.compile(r"^-- Running (upgrade|downgrade) +(\S*) -> *(\S*)[ \t]*$", re.M)


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


@dataclass(frozen=True)
class Rendered:
    """The SQL of the pending migrations, or why there is none.

    When unavailable, ``files`` hold the migrations' own source (for the hash).
    """

    files: tuple[SqlFile, ...]
    unavailable_reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a run would execute, as a person approves it: ``to_dict`` is ``status.plan``."""

    hash: str
    direction: Direction
    current: str | None
    target: str | None
    migrations: tuple[str, ...]  # file names, in the order they would run
    report: Report | None  # None when the SQL could not be rendered
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        return self.report is not None

    @property
    def classification(self) -> Classification:
        if self.report is None:
            return "Unknown"
        return "Destructive" if self.report.destructive else "Additive"

    @property
    def needs_approval(self) -> tuple[Finding, ...]:
        """The findings that make the plan destructive (destructive or breaking)."""
        findings = self.report.findings if self.report else ()
        return tuple(finding for finding in findings if finding.severity != "info")

    def to_dict(self) -> dict[str, Any]:
        """The whole plan, as ``status.plan`` holds it."""
        report = self.report
        payload: dict[str, Any] = {"hash": self.hash, "available": self.available}
        if self.unavailable_reason is not None:
            payload["unavailableReason"] = self.unavailable_reason
        payload["classification"] = self.classification
        payload["direction"] = _DIRECTION_NAMES[self.direction]
        if self.current is not None:
            payload["from"] = self.current
        if self.target is not None:
            payload["to"] = self.target
        payload.update(
            {
                "migrations": list(self.migrations),
                "statements": report.statements if report else 0,
                "summary": dict(report.summary) if report else {},
                "destructive": [_destructive_line(f) for f in self.needs_approval],
                "findings": [finding.to_dict() for finding in report.findings] if report else [],
                "findingsOmitted": 0,
            }
        )
        return payload

    def compact(self, limit: int) -> dict[str, Any]:
        """:meth:`to_dict` cut to at most ``limit`` bytes of JSON.

        Drops findings from the end, then migrations, then shortens and drops
        the destructive lines; every dropped item is counted (``findingsOmitted``,
        ``migrationsOmitted``, ``destructiveOmitted``) so nobody mistakes a cut
        list for a whole one.  Hash, classification and direction always stay.
        """
        return plan_budget.compact(self.to_dict(), limit)

    def summary(self) -> str:
        """One line for logs and messages."""
        ends = f"from {self.current or 'base'} to {self.target or 'base'}"
        head = f"plan {self.hash}: {_DIRECTION_NAMES[self.direction]} {ends}"
        migrations = f"{len(self.migrations)} migration(s)"
        if self.report is None:
            return f"{head}, {migrations}, Unknown: {self.unavailable_reason}"
        counts = f"{migrations}, {self.report.statements} statement(s)"
        risky = self.needs_approval
        if not risky:
            return f"{head}, {counts}, {self.classification}"
        more = f" and {len(risky) - 1} more" if len(risky) > 1 else ""
        return f"{head}, {counts}, {self.classification}: {_destructive_line(risky[0])}{more}"


def _destructive_line(finding: Finding) -> str:
    statement = plan_budget.flat_clip(finding.statement, DESTRUCTIVE_STATEMENT_CHARS)
    return f"{finding.file}:{finding.line}: {statement}"


# --------------------------------------------------------------------------- rendering


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
    try:
        with (
            run_session.database_errors(identity, request.database_url),
            database.connect(engine, request.database_url) as connection,
        ):
            pending = runner.pending_work(connection, source, request, identity)
    finally:
        engine.dispose()
    return plan_of(source, pending, identity, salt, request.database_url)


def plan_of(
    source: Source, pending: PendingWork, identity: DatabaseIdentity, salt: str, url: str
) -> Plan:
    """Render, classify and hash ``pending`` (``url`` only to scrub error text)."""
    rendered = _render(source, pending, identity, url)
    report = None
    if rendered.unavailable_reason is None:
        dialect = classify.dialect_for_engine(identity.engine)
        report = classify.classify(rendered.files, dialect, ignore_tables=IGNORED_TABLES)
    return Plan(
        hash=plan_hash(salt, pending, rendered.files),
        direction=pending.direction,
        current=pending.current,
        target=pending.target,
        migrations=tuple(sql_file.name for sql_file in rendered.files),
        report=report,
        unavailable_reason=rendered.unavailable_reason,
    )


def plan_from_offline_sql(text: str, engine: str, salt: str, pending: PendingWork) -> Plan:
    """The plan of SQL a tool printed in its own image (`alembic upgrade a:b --sql`).

    The revisions are not known here (the scripts live in that image): the files are named
    after Alembic's `-- Running upgrade a -> b` markers, with the revision ids.
    """
    files = _split_by_revision(text, {}) if text.strip() else ()
    dialect = classify.dialect_for_engine(engine)
    return Plan(
        hash=plan_hash(salt, pending, files),
        direction=pending.direction,
        current=pending.current,
        target=pending.target,
        migrations=tuple(sql_file.name for sql_file in files),
        report=classify.classify(files, dialect, ignore_tables=IGNORED_TABLES),
    )


def plan_hash(salt: str, pending: PendingWork, files: Sequence[SqlFile]) -> str:
    """First 16 hex digits of a sha256 over everything that makes the plan what it is.

    Every part is length-prefixed, so no two different plans hash the same
    material (``"ab" + "c"`` versus ``"a" + "bc"``).
    """
    digest = hashlib.sha256()
    parts = [salt, _DIRECTION_NAMES[pending.direction], pending.current, pending.target]
    for sql_file in files:
        parts += [sql_file.name, sql_file.sql]
    for part in parts:
        data = b"\xff" if part is None else part.encode()  # \xff never starts valid UTF-8
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:HASH_CHARS]


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


def _split_by_revision(text: str, names: Mapping[str, str]) -> tuple[SqlFile, ...]:
    """One file per revision, cut at Alembic's markers, named after the revision's script.

    What comes before the first marker (``BEGIN``, creating ``alembic_version``)
    belongs to the first revision, the final ``COMMIT`` to the last.  Line
    numbers are lines of that revision's rendered SQL.
    """
    markers = list(_REVISION_MARKER.finditer(text))
    if not markers:
        return (SqlFile("alembic-offline.sql", text),)
    files = []
    for index, marker in enumerate(markers):
        start = 0 if index == 0 else marker.start()
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        revision = marker[3] if marker[1] == "upgrade" else marker[2]
        files.append(SqlFile(names.get(revision, revision), text[start:end]))
    return tuple(files)


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
