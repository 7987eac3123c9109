"""External tools carry the migration tag, so the fence can end what a killed run left behind.

Lockstep does not own the connections of Flyway, Prisma, Django, Knex or Sequelize: it hands them
the tag and relies on each driver or hook to use it (docs/adr/0009-the-fence.md): on PostgreSQL
``PGAPPNAME`` in the migrate container (``ApplicationName`` in Flyway's JDBC URL); on
MySQL/MariaDB the statement that takes the run's mark, as ``FLYWAY_INIT_SQL`` or, for a tool's own
connection hook, ``LOCKSTEP_RUN_MARK_SQL`` (the Sequelize example's config uses it). Each test
runs the real tool, as the example image runs it, on a migration that sleeps on the server, then
checks what the fence relies on: the server names the tool's working connection as the run's
(tag or mark), and the fence of the next run ends it, after which the tool fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import toolchains
from lockstep import constants, database, model, tools
from lockstep.jobs import containers
from lockstep.pod import fence, url_formats
from lockstep.tools import get_adapter as adapter_for
from migration_backends import admin_engine, family, migration_backends, wait_for
from testbed.podagent import images

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# JVM and Node.js start-up plus Prisma's WebAssembly engine, on a busy 2-core machine.
START_SECONDS = 180.0
SLEEP_SQL = {
    "postgresql": "SELECT pg_sleep(120)",
    # A bare SELECT SLEEP() returns 1 when killed instead of failing: sleep inside a query.
    "mariadb": "SELECT SLEEP(120) FROM information_schema.SCHEMATA LIMIT 1",
}
URL_FIXTURES = {"postgresql": "pg_url", "mariadb": "mariadb_url"}


@dataclass(frozen=True)
class ToolCase:
    """A tool, the example project it runs, and how a sleeping migration is added to it."""

    tool: str
    example: str
    toolchain: str
    engine: str  # "postgresql" or "mariadb"
    scheme: str  # the URL scheme the tool's driver wants
    add_sleeping_migration: Callable[[Path, str], None]

    def __str__(self) -> str:
        return f"{self.tool}-{self.engine}"


def _flyway_sleep(project: Path, sleep: str) -> None:
    (project / "migrations" / "V3__sleep.sql").write_text(f"{sleep};\n")


def _prisma_sleep(project: Path, sleep: str) -> None:
    folder = project / "prisma" / "migrations" / "20240103120000_sleep"
    folder.mkdir()
    (folder / "migration.sql").write_text(f"{sleep};\n")


def _django_sleep(project: Path, sleep: str) -> None:
    (project / "shop" / "migrations" / "0003_sleep.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("shop", "0002_create_orders")]\n'
        f"    operations = [migrations.RunSQL({sleep!r})]\n"
    )


def _node_sleep(filename: str, call: str) -> Callable[[Path, str], None]:
    def add(project: Path, sleep: str) -> None:
        (project / "migrations" / filename).write_text(
            f"module.exports = {{\n  up: async (db) => {{ await {call}({sleep!r}); }},\n"
            f"  down: async () => {{}},\n}};\n"
        )

    return add


_KNEX_SLEEP = _node_sleep("20240103120000_sleep.js", "db.raw")
_SEQUELIZE_SLEEP = _node_sleep("20240103120000-sleep.js", "db.sequelize.query")
CASES = [
    ToolCase("flyway", "flyway-postgresql", "flyway", "postgresql", "postgresql", _flyway_sleep),
    ToolCase("prisma", "prisma-postgresql", "node", "postgresql", "postgresql", _prisma_sleep),
    ToolCase("django", "django-postgresql", "django", "postgresql", "postgresql", _django_sleep),
    ToolCase("knex", "knex-postgresql", "node", "postgresql", "postgresql", _KNEX_SLEEP),
    # The Sequelize example on PostgreSQL too: its dialect follows the URL.
    ToolCase("sequelize", "sequelize-mariadb", "node", "postgresql", "postgres", _SEQUELIZE_SLEEP),
    ToolCase("flyway", "flyway-mariadb", "flyway", "mariadb", "mariadb", _flyway_sleep),
    ToolCase("sequelize", "sequelize-mariadb", "node", "mariadb", "mysql", _SEQUELIZE_SLEEP),
]


def _environment(case: ToolCase, url: str) -> dict[str, str]:
    """What the migrate container of the example's image gets, as the pod agent would run it."""
    profile = images.ImageCatalog.load().resolve(f"lockstep-examples/{case.example}:1")
    tool_url = make_url(url).set(drivername=case.scheme).render_as_string(hide_password=False)
    env = {"HOME": os.environ.get("HOME", "/root"), **profile.env, "DATABASE_URL": tool_url}
    # The tag, exactly as the Job gives it to a tool's own image.
    spec_env = containers.migration_tag_env(_spec_of(case))
    env.update({e["name"]: e["value"] for e in spec_env})
    return env


def _spec_of(case: ToolCase) -> model.Spec:
    return model.parse_spec(
        {
            "tool": case.tool,
            "image": f"lockstep-examples/{case.example}:1",
            "database": {"engine": case.engine, "urlSecretRef": {"name": "db", "key": "url"}},
        }
    )


@pytest.fixture
def running_tool(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ToolCase, subprocess.Popen[str], str]]:
    case: ToolCase = request.param
    url: str = request.getfixturevalue(URL_FIXTURES[case.engine])
    toolchains.install(case.toolchain, echo=False)
    project = tmp_path / case.example
    shutil.copytree(EXAMPLES / case.example, project, ignore=shutil.ignore_patterns("node_modules"))
    case.add_sleeping_migration(project, SLEEP_SQL[case.engine])
    command = adapter_for(case.tool).upgrade_command("head")
    env = _environment(case, url)
    url_format = adapter_for(case.tool).url_format
    if url_format:  # what the `lockstep dburl` init container writes, where the script reads it
        env_file = tmp_path / "env"
        env_file.write_text(
            url_formats.render_env_file(url_formats.env_for(url_format, env["DATABASE_URL"]))
        )
        command = [part.replace(tools.base.ENV_FILE, str(env_file)) for part in command]
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield case, process, url
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def _working_migrations(url: str) -> list[tuple[int, str]]:
    """The connections the server names as a run's (tag or mark) that are sleeping in a step."""
    return [(b, query) for b, query in migration_backends(url) if "SLEEP(120)" in query.upper()]


def _untagged_sleeper(url: str) -> bool:
    """A connection sleeping in the step that the server does not name as a run's."""
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            if family(url) == "postgresql":
                found = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query ILIKE '%sleep(120)%' AND application_name <> :tag "
                        "AND pid <> pg_backend_pid()"
                    ),
                    {"tag": constants.MIGRATION_APPLICATION_NAME},
                ).scalar_one()
            else:
                found = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM information_schema.PROCESSLIST "
                        "WHERE DB = DATABASE() AND INFO LIKE '%SLEEP(120)%' "
                        "AND ID <> CONNECTION_ID() AND ID <> coalesce(IS_USED_LOCK(:mark), 0)"
                    ),
                    {"mark": fence.run_lock_name(database.identity_from_url(url))},
                ).scalar_one()
    finally:
        engine.dispose()
    return bool(found)


@pytest.mark.parametrize("running_tool", CASES, ids=str, indirect=True)
def test_the_tools_backend_carries_the_tag_and_the_fence_ends_it(
    running_tool: tuple[ToolCase, subprocess.Popen[str], str],
) -> None:
    case, process, url = running_tool

    def sleeping() -> bool:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"{case.tool} exited with {process.returncode} before it slept:\n{output}")
        return bool(_working_migrations(url)) or _untagged_sleeper(url)

    wait_for(sleeping, START_SECONDS, f"{case.tool}'s sleeping migration on the server")
    assert not _untagged_sleeper(url), f"{case.tool} migrates on a connection the fence cannot see"
    ((sleeper, _query),) = _working_migrations(url)

    identity = database.identity_from_url(url)
    engine = database.make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock_connection:
        fenced = fence.fence_earlier_runs(lock_connection, identity, wait_seconds=15)
    engine.dispose()

    assert sleeper in {backend.backend_id for backend in fenced}
    assert not _working_migrations(url)
    code = process.wait(timeout=60)
    output = process.stdout.read() if process.stdout else ""
    assert code != 0, f"{case.tool} went on as if its migration had run:\n{output}"


@pytest.mark.parametrize("name_length", [20, 51, 52, 64])
def test_the_run_mark_statement_takes_the_mark_the_fence_looks_for(
    mariadb_admin_url: str, name_length: int
) -> None:
    """RUN_MARK_SQL names the mark from DATABASE() on the server; run_lock_name in Python.
    Both must agree, for short names and for names hashed to fit GET_LOCK's 64 characters."""
    name = ("lockstep_mark_" + os.urandom(32).hex())[:name_length]
    admin = admin_engine(mariadb_admin_url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = make_url(mariadb_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql(constants.RUN_MARK_SQL).scalar() == 1
            holder = connection.execute(
                sa.text("SELECT IS_USED_LOCK(:mark) = CONNECTION_ID()"),
                {"mark": fence.run_lock_name(database.identity_from_url(url))},
            ).scalar()
            assert holder == 1
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE `{name}`")
        admin.dispose()
