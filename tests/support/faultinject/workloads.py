"""Migrations that sleep, for SQL files, Alembic scripts and Knex, and the truth checks.

Every workload has four steps; step k creates table ``step_k`` and inserts the row ``k``, and
steps 2-4 sleep on the server (pg_sleep / SLEEP) for a random 0.2-1.5 s (Knex: 0.5-3 s), before
or between their statements, so that a kill lands inside a statement, between statements or
between files. What a run reported is then compared with what the database holds
(:func:`invariant_problems`, :func:`claim_problems`).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lockstep import database

STEPS = 4
REPO = Path(__file__).resolve().parents[3]
_ALEMBIC_FIXTURE = REPO / "tests" / "fixtures" / "alembic" / "shop"
_KNEXFILE = REPO / "examples" / "knex-postgresql" / "knexfile.js"
# Where in a step the sleep goes: inside the file's transaction after the DDL, before it, after.
_LAYOUTS = ("ddl-sleep-insert", "sleep-ddl-insert", "ddl-insert-sleep", "ddl-sleep-insert")


# Seconds a step sleeps on the server. Knex starts slowly (Node.js): its rerun reaches the
# database ~2 s after the kill, so only longer statements can outlive the killed run.
_SLEEPS = {"knex": (0.5, 3.0)}


@dataclass(frozen=True)
class State:
    """What the database holds: rows per ``step_k`` table, and what is recorded per step."""

    tables: dict[int, int]  # step -> row count of step_k (absent: no table)
    recorded: dict[int, bool]  # step -> recorded as applied (True) or as failed/started (False)

    def at_head(self) -> bool:
        every = range(1, STEPS + 1)
        return all(self.recorded.get(k) is True and self.tables.get(k) == 1 for k in every)


def _sleep(family: str, seconds: float) -> str:
    return (
        f"SELECT pg_sleep({seconds:.2f})"
        if family == "postgresql"
        else f"SELECT SLEEP({seconds:.2f})"
    )


def _kinds(step: int) -> list[str]:
    """The statements of step ``step`` in file order: "ddl", "sleep", "insert"."""
    return ["ddl", "insert"] if step == 1 else _LAYOUTS[step - 1].split("-")


def _statements(family: str, step: int, sleep: float) -> list[str]:
    ddl, insert = (
        f"CREATE TABLE step_{step} (id integer)",
        f"INSERT INTO step_{step} VALUES ({step})",
    )
    order = {"ddl": ddl, "sleep": _sleep(family, sleep), "insert": insert}
    return [order[kind] for kind in _kinds(step)]


@dataclass(frozen=True)
class Workload:
    """One tool on one engine: writes the source, says how to run it and reads the state."""

    tool: str  # "sql", "alembic", "knex"; "plain": a bare client (the monitor's control)
    family: str  # "postgresql" or "mysql"
    node_home: Path | None = None  # the Knex toolchain

    @property
    def unrecorded_partial(self) -> bool:
        """A step cut off part-way may leave committed statements no record knows of."""
        return self.tool == "alembic" and self.family == "mysql"

    @property
    def name(self) -> str:
        engine = "postgresql" if self.family == "postgresql" else "mariadb"
        return f"{self.tool}/{engine}"

    def write(self, directory: Path, rng: random.Random, sleep: float | None = None) -> float:
        """Write the four steps into ``directory`` (emptied); the seconds they sleep in all.

        Each step sleeps a random 0.2-1.5 s, or ``sleep`` seconds when given."""
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        low, high = _SLEEPS.get(self.tool, (0.2, 1.5))
        sleeps = {k: sleep or round(rng.uniform(low, high), 2) for k in range(2, STEPS + 1)}
        for step in range(1, STEPS + 1):
            statements = _statements(self.family, step, sleeps.get(step, 0.0))
            {
                "sql": _write_sql,
                "plain": _write_sql,
                "alembic": _write_alembic,
                "knex": _write_knex,
            }[self.tool](directory, step, statements)
        if self.tool == "alembic":
            shutil.copy(_ALEMBIC_FIXTURE / "env.py", directory / "env.py")
            shutil.copy(_ALEMBIC_FIXTURE / "script.py.mako", directory / "script.py.mako")
        if self.tool == "knex":
            shutil.copy(_KNEXFILE, directory / "knexfile.js")
        return sum(sleeps.values())

    def migrate_command(self, source: Path, result_file: Path) -> list[str]:
        """The migrate container's command, as the Job runs it after the sidecar took the lock."""
        if self.tool == "knex":
            return ["knex", "migrate:latest"]
        if self.tool == "plain":
            return [sys.executable, "-c", _PLAIN_CLIENT, self.family]
        return [
            sys.executable, "-m", "lockstep.cli", "run", "--tool", self.tool,
            "--source", str(source), "--no-lock", "--lock-wait-seconds", "30",
            "--result-file", str(result_file),
        ]  # fmt: skip

    def migrate_env(self) -> dict[str, str]:
        if self.tool != "knex":
            return {}
        assert self.node_home is not None
        binaries = self.node_home / "node_modules" / ".bin"
        return {
            "NODE_PATH": str(self.node_home / "node_modules"),
            "PATH": f"{binaries}{os.pathsep}{os.environ['PATH']}",
            "PGAPPNAME": "lockstep-migration",  # what the Job sets for tools on PostgreSQL
        }

    def snapshot(self, url: str) -> State:
        engine = database.make_engine(url)
        try:
            with engine.connect() as connection:
                names = set(sa.inspect(connection).get_table_names())
                tables = {
                    k: int(
                        connection.execute(sa.text(f"SELECT count(*) FROM step_{k}")).scalar_one()
                    )
                    for k in range(1, STEPS + 1)
                    if f"step_{k}" in names
                }
                return State(tables, self._recorded(connection, names))
        finally:
            engine.dispose()

    def _recorded(self, connection: sa.Connection, names: set[str]) -> dict[int, bool]:
        if self.tool == "sql" and "lockstep_schema_history" in names:
            rows = connection.execute(
                sa.text("SELECT version, success FROM lockstep_schema_history")
            )
            return {int(version): bool(success) for version, success in rows}
        if self.tool == "alembic" and "alembic_version" in names:
            current = connection.execute(
                sa.text("SELECT version_num FROM alembic_version")
            ).scalar()
            return dict.fromkeys(range(1, _alembic_step(current) + 1), True)
        if self.tool == "knex" and "knex_migrations" in names:
            names_run = connection.execute(sa.text("SELECT name FROM knex_migrations")).scalars()
            return {int(name.split("_")[0][-1]): True for name in names_run}
        return {}


# A client that is not Lockstep (nothing tags or fences it): sleeps twice on the server.
_PLAIN_CLIENT = """
import os, sys
from sqlalchemy.engine import make_url
url = make_url(os.environ["DATABASE_URL"])
if sys.argv[1] == "postgresql":
    import psycopg
    connection = psycopg.connect(host=url.host, port=url.port, user=url.username,
                                 password=url.password, dbname=url.database, autocommit=True)
    for _ in range(2):
        connection.execute("SELECT pg_sleep(1.5)")
else:
    import pymysql
    connection = pymysql.connect(host=url.host, port=url.port, user=url.username,
                                 password=url.password, database=url.database, autocommit=True)
    for _ in range(2):
        connection.cursor().execute("SELECT SLEEP(1.5)")
"""


def _write_sql(directory: Path, step: int, statements: list[str]) -> None:
    text = "".join(f"{statement};\n" for statement in statements)
    (directory / f"V{step}__step_{step}.sql").write_text(text)


def _alembic_revision(step: int) -> str:
    return f"f000000{step}"


def _alembic_step(revision: object) -> int:
    return int(str(revision)[-1]) if revision else 0


def _write_alembic(directory: Path, step: int, statements: list[str]) -> None:
    versions = directory / "versions"
    versions.mkdir(exist_ok=True)
    down = repr(_alembic_revision(step - 1)) if step > 1 else "None"
    body = "".join(f"    op.execute({statement!r})\n" for statement in statements)
    (versions / f"{_alembic_revision(step)}_step_{step}.py").write_text(
        f'"""Step {step}."""\n\nfrom alembic import op\n\n'
        f"revision = {_alembic_revision(step)!r}\ndown_revision = {down}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{body}\n\ndef downgrade() -> None:\n"
        f"    op.execute('DROP TABLE step_{step}')\n"
    )


def _write_knex(directory: Path, step: int, statements: list[str]) -> None:
    migrations = directory / "migrations"
    migrations.mkdir(exist_ok=True)
    body = "".join(f"  await knex.raw({statement!r});\n" for statement in statements)
    (migrations / f"2024010100000{step}_step_{step}.js").write_text(
        f"exports.up = async (knex) => {{\n{body}}};\n"
        f"exports.down = async (knex) => {{\n  await knex.raw('DROP TABLE step_{step}');\n}};\n"
    )


# --------------------------------------------------------------------------- the truth checks


def invariant_problems(state: State, workload: Workload) -> list[str]:
    """Recorded status against effects: what is recorded applied is there, and nothing is there
    that the history does not know of (the next run would run it again, blindly).

    Alembic on MySQL/MariaDB is the exception to the second half: Alembic records a revision
    only once it completed, and MariaDB commits each DDL statement, so a revision cut off
    part-way leaves statements no record knows; there the rerun's message must say so instead
    (:func:`claim_problems`)."""
    problems = []
    for step in range(1, STEPS + 1):
        recorded, rows = state.recorded.get(step), state.tables.get(step)
        if recorded is True and rows != 1:
            problems.append(f"step {step} is recorded as applied but step_{step} has {rows} rows")
        if recorded is None and rows is not None and not workload.unrecorded_partial:
            problems.append(f"step_{step} exists ({rows} rows) but step {step} is not recorded")
    return problems


_SQL_FILE = re.compile(r"V(\d+)__\w+\.sql")
_AS_BEFORE = re.compile(r"as before this file|rolled (?:the whole file |it )?back", re.IGNORECASE)
_ALEMBIC_AT = re.compile(r"at revision (\w+)")
_COMPLETED = re.compile(
    r"V(\d+)__\w+\.sql\b.*?(?:(none|\d+) of its \d+ statement\(s\) completed|"
    r"(\d+) statement\(s\) ran)"
)


def _partial_problems(message: str, state: State) -> list[str]:
    """A file reported as stopped part-way: what it says completed took effect, and what it
    says did not run did not (the statement that was cut off may have, or not)."""
    match = _COMPLETED.search(message)
    if match is None:
        return []
    step, done = int(match[1]), match[2] or match[3]
    completed = 0 if done == "none" else int(done)
    kinds, rows = _kinds(step), state.tables.get(step)
    effects = {"ddl": rows is not None, "insert": rows == 1, "sleep": None}
    problems = [
        f"says {kind} of V{step} completed, yet step_{step} has {rows} rows"
        for kind in kinds[:completed]
        if effects[kind] is False
    ]
    problems += [
        f"says {kind} of V{step} did not run, yet step_{step} has {rows} rows"
        for kind in kinds[completed + 1 :]
        if effects[kind] is True
    ]
    return [f"{problem}: {message}" for problem in problems]


def claim_problems(report: dict[str, Any] | None, state: State, final: bool) -> list[str]:
    """What ``report`` (a runner's result file) claims that ``state`` contradicts.

    ``final``: no run changed the database after this one (its failure claims are checkable).
    """
    if not report:
        return []
    problems = []
    if report.get("result") == "Succeeded":
        to = report.get("to")
        reached = _alembic_step(to) if report.get("tool") == "alembic" else int(to or 0)
        missing = [k for k in range(1, reached + 1) if state.recorded.get(k) is not True]
        if missing:
            problems.append(f"reported Succeeded at {to} but steps {missing} are not applied")
        if final and not state.at_head():
            problems.append(f"reported Succeeded at {to} but the database is not at head: {state}")
        return problems
    message = str(report.get("message", ""))
    if not final:
        return problems
    named = _SQL_FILE.search(message)
    if named and _AS_BEFORE.search(message):
        step = int(named[1])
        if state.tables.get(step) is not None or state.recorded.get(step) is not None:
            problems.append(
                f"claims V{step} left no trace, yet step_{step} has "
                f"{state.tables.get(step)} rows and history {state.recorded.get(step)}: {message}"
            )
    problems += _partial_problems(message, state)
    unrecorded = [k for k, rows in state.tables.items() if k not in state.recorded]
    if unrecorded and "stay applied" not in message:
        problems.append(f"step_{unrecorded} exist unrecorded and the report does not say so")
    at = _ALEMBIC_AT.search(message)
    if at and report.get("reason") == "MigrationFailed" and "Alembic" in message:
        recorded = max((k for k, ok in state.recorded.items() if ok), default=0)
        if _alembic_step(None if at[1] == "base" else at[1]) != recorded:
            problems.append(f"claims revision {at[1]} but step {recorded} is recorded: {message}")
    return problems
