"""External tools carry the migration tag, so the fence can end what a killed run left behind.

Lockstep does not own the connections of Flyway, Prisma, Django, Knex or Sequelize: it hands them
the tag (``PGAPPNAME`` in the migrate container, ``ApplicationName`` in Flyway's JDBC URL) and
relies on each driver to send it (docs/adr/0009-the-fence.md). Each test runs the real tool, as
the example image runs it, on a migration that sleeps on the server, then checks what the fence
relies on: the tool's backend shows the tag in ``pg_stat_activity``, and the fence of the next run
ends it (the tool fails, nothing of the sleeping migration stays recorded as applied).
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
from migration_backends import wait_for
from testbed.podagent import images

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# JVM and Node.js start-up plus Prisma's WebAssembly engine, on a busy 2-core machine.
START_SECONDS = 180.0
SLEEP_SQL = "SELECT pg_sleep(120)"


@dataclass(frozen=True)
class ToolCase:
    """A tool, the example project it runs, and how a sleeping migration is added to it."""

    tool: str
    example: str
    toolchain: str
    scheme: str  # the URL scheme the tool's driver wants
    add_sleeping_migration: Callable[[Path], None]

    def __str__(self) -> str:
        return self.tool


def _flyway_sleep(project: Path) -> None:
    (project / "migrations" / "V3__sleep.sql").write_text(f"{SLEEP_SQL};\n")


def _prisma_sleep(project: Path) -> None:
    folder = project / "prisma" / "migrations" / "20240103120000_sleep"
    folder.mkdir()
    (folder / "migration.sql").write_text(f"{SLEEP_SQL};\n")


def _django_sleep(project: Path) -> None:
    (project / "shop" / "migrations" / "0003_sleep.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("shop", "0002_create_orders")]\n'
        f"    operations = [migrations.RunSQL({SLEEP_SQL!r})]\n"
    )


def _node_sleep(filename: str, call: str) -> Callable[[Path], None]:
    def add(project: Path) -> None:
        (project / "migrations" / filename).write_text(
            f"module.exports = {{\n  up: async (db) => {{ await {call}({SLEEP_SQL!r}); }},\n"
            f"  down: async () => {{}},\n}};\n"
        )

    return add


CASES = [
    ToolCase("flyway", "flyway-postgresql", "flyway", "postgresql", _flyway_sleep),
    ToolCase("prisma", "prisma-postgresql", "node", "postgresql", _prisma_sleep),
    ToolCase("django", "django-postgresql", "django", "postgresql", _django_sleep),
    ToolCase(
        "knex",
        "knex-postgresql",
        "node",
        "postgresql",
        _node_sleep("20240103120000_sleep.js", "db.raw"),
    ),
    ToolCase(
        "sequelize",
        "sequelize-mariadb",  # the same project on PostgreSQL: its dialect follows the URL
        "node",
        "postgres",
        _node_sleep("20240103120000-sleep.js", "db.sequelize.query"),
    ),
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
            "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
        }
    )


@pytest.fixture
def running_tool(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> Iterator[tuple[ToolCase, subprocess.Popen[str], str]]:
    case: ToolCase = request.param
    toolchains.install(case.toolchain, echo=False)
    project = tmp_path / case.example
    shutil.copytree(EXAMPLES / case.example, project, ignore=shutil.ignore_patterns("node_modules"))
    case.add_sleeping_migration(project)
    command = adapter_for(case.tool).upgrade_command("head")
    env = _environment(case, pg_url)
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
    yield case, process, pg_url
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def _tagged_sleepers(url: str) -> list[tuple[int, str]]:
    engine = database.make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT pid, application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE '%pg_sleep(120)%' "
                "AND pid <> pg_backend_pid()"
            )
        ).all()
    engine.dispose()
    return [(int(pid), str(name)) for pid, name in rows]


@pytest.mark.parametrize("running_tool", CASES, ids=str, indirect=True)
def test_the_tools_backend_carries_the_tag_and_the_fence_ends_it(
    running_tool: tuple[ToolCase, subprocess.Popen[str], str],
) -> None:
    case, process, url = running_tool

    def sleeping() -> bool:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"{case.tool} exited with {process.returncode} before it slept:\n{output}")
        return bool(_tagged_sleepers(url))

    wait_for(sleeping, START_SECONDS, f"{case.tool}'s sleeping migration on the server")
    (sleeper,) = _tagged_sleepers(url)
    assert sleeper[1] == constants.MIGRATION_APPLICATION_NAME, (
        f"{case.tool}'s backend is named {sleeper[1]!r}: the fence would not see it"
    )

    identity = database.identity_from_url(url)
    engine = database.make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock_connection:
        fenced = fence.fence_earlier_runs(lock_connection, identity, wait_seconds=15)
    engine.dispose()

    assert sleeper[0] in {backend.backend_id for backend in fenced}
    assert not _tagged_sleepers(url)
    code = process.wait(timeout=60)
    output = process.stdout.read() if process.stdout else ""
    assert code != 0, f"{case.tool} went on as if its migration had run:\n{output}"
