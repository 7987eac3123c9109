"""Each tool's version-table reader (lockstep.version_tables) against real databases.

Two kinds of proof:

- tables written by the real tool (Flyway, Knex, Sequelize, Prisma Migrate,
  Django, installed by tools/toolchains/install.sh into the toolchain cache),
  run with the adapter's own commands against the example projects under
  examples/: up part way, up to head, and down one step where the tool can,
  reading the revision after each step;
- tables written by SQL, for the states a tool run cannot easily produce
  (failed, rolled-back and repeatable rows) and for engines a tool has no
  driver for here (Prisma's WebAssembly schema engine and the Node.js tools on
  SQLite, Prisma on MariaDB, Flyway on SQLite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockstep import database, errors, tools, version_tables
from lockstep.pod import url_formats
from lockstep.tools import flyway

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
INSTALL_SCRIPT = REPO / "tools" / "toolchains" / "install.sh"
TOOL_TIMEOUT_SECONDS = 180

KNEX_1, KNEX_2 = "20240101120000_create_customers.js", "20240102120000_create_orders.js"
SEQ_1, SEQ_2 = "20240101120000-create-customers.js", "20240102120000-create-orders.js"
PRISMA_1, PRISMA_2 = "20240101120000_create_customers", "20240102120000_create_orders"
DJANGO_1, DJANGO_2 = "shop:0001_initial", "shop:0002_create_orders"


# --------------------------------------------------------------------------- helpers


def install(toolchain: str) -> Path:
    """Install (or find up to date) one toolchain; its directory in the cache."""
    completed = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), toolchain],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        if "not found: install" in output:  # a prerequisite (JVM, Maven, Node.js) is missing
            pytest.fail(
                f"{toolchain} toolchain cannot be installed: {output.strip()[-300:]}\n"
                "run `make system-deps` (scripts/install-system-deps.sh installs the JDK, Maven "
                "and Node.js the tool tests need)"
            )
        pytest.fail(f"tools/toolchains/install.sh {toolchain} failed:\n{output[-3000:]}")
    root = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--print-root"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(root) / toolchain


@pytest.fixture(scope="session")
def flyway_home() -> Path:
    return install("flyway")


@pytest.fixture(scope="session")
def node_home() -> Path:
    return install("node")


@pytest.fixture(scope="session")
def django_home() -> Path:
    return install("django")


def run(
    command: Sequence[str],
    *,
    cwd: Path,
    url: str,
    path: Path,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Run one adapter command as the migration Job would: DATABASE_URL and the tool on PATH."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PATH": f"{path}{os.pathsep}{os.environ['PATH']}",
        "NO_COLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(extra or {}),
    }
    completed = subprocess.run(
        list(command),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=TOOL_TIMEOUT_SECONDS,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{command[:4]} failed ({completed.returncode}):\n{output}"
    return output


def project_copy(example: str, tmp_path: Path) -> Path:
    """The example in a scratch folder: tools may write caches next to their files."""
    target = tmp_path / example
    shutil.copytree(EXAMPLES / example, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


# --------------------------------------------------------------------------- version tables by SQL

metadata = sa.MetaData()
NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
TABLES: dict[str, sa.Table] = {
    "flyway": sa.Table(
        "flyway_schema_history",
        metadata,
        sa.Column("installed_rank", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.String(50)),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("script", sa.String(1000), nullable=False),
        sa.Column("checksum", sa.Integer),
        sa.Column("installed_by", sa.String(100), nullable=False),
        sa.Column("installed_on", sa.DateTime, nullable=False),
        sa.Column("execution_time", sa.Integer, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
    ),
    "prisma": sa.Table(
        "_prisma_migrations",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("migration_name", sa.String(255), nullable=False),
        sa.Column("logs", sa.Text),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_steps_count", sa.Integer, nullable=False),
    ),
    "knex": sa.Table(
        "knex_migrations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("batch", sa.Integer),
        sa.Column("migration_time", sa.DateTime),
    ),
    "django": sa.Table(
        "django_migrations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("applied", sa.DateTime, nullable=False),
    ),
    "sequelize": sa.Table(
        "SequelizeMeta", metadata, sa.Column("name", sa.String(255), primary_key=True)
    ),
}


def flyway_row(
    rank: int, version: str | None, kind: str = "SQL", ok: bool = True
) -> dict[str, Any]:
    return {
        "installed_rank": rank,
        "version": version,
        "description": f"step {rank}",
        "type": kind,
        "script": f"V{version}__step.sql" if version else f"R__step_{rank}.sql",
        "checksum": rank,
        "installed_by": "test",
        "installed_on": NOW.replace(tzinfo=None),
        "execution_time": 1,
        "success": ok,
    }


def prisma_row(
    name: str, minute: int, *, finished: bool = True, rolled_back: bool = False
) -> dict[str, Any]:
    started = NOW + timedelta(minutes=minute)
    return {
        "id": f"id-{name}"[:36],
        "checksum": "0" * 64,
        "finished_at": started + timedelta(seconds=1) if finished else None,
        "migration_name": name,
        "logs": None,
        "rolled_back_at": started + timedelta(seconds=2) if rolled_back else None,
        "started_at": started,
        "applied_steps_count": 1 if finished else 0,
    }


def knex_row(ident: int, name: str) -> dict[str, Any]:
    return {"id": ident, "name": name, "batch": 1, "migration_time": NOW.replace(tzinfo=None)}


def django_row(ident: int, app: str, name: str) -> dict[str, Any]:
    return {"id": ident, "app": app, "name": name, "applied": NOW.replace(tzinfo=None)}


# (tool, rows, expected revision): partly and fully migrated histories, with the
# rows each reader must see past.
HISTORIES: list[tuple[str, str, list[dict[str, Any]], str]] = [
    ("flyway", "partly", [flyway_row(1, "1")], "1"),
    (
        "flyway",
        "fully",
        [flyway_row(1, "1"), flyway_row(2, None), flyway_row(3, "2"), flyway_row(4, None)],
        "2",
    ),
    ("flyway", "failed-newest", [flyway_row(1, "1"), flyway_row(2, "2", ok=False)], "1"),
    ("flyway", "numeric-order", [flyway_row(1, "1.9"), flyway_row(2, "1.10")], "1.10"),
    (
        "flyway",
        "undone",
        [flyway_row(1, "1"), flyway_row(2, "2"), flyway_row(3, "2", "UNDO_SQL")],
        "1",
    ),
    ("prisma", "partly", [prisma_row(PRISMA_1, 0)], PRISMA_1),
    ("prisma", "fully", [prisma_row(PRISMA_1, 0), prisma_row(PRISMA_2, 1)], PRISMA_2),
    (
        "prisma",
        "failed-and-rolled-back",
        [
            prisma_row(PRISMA_1, 0),
            prisma_row(PRISMA_2, 1, rolled_back=True),
            prisma_row("20240103120000_broken", 2, finished=False),
        ],
        PRISMA_1,
    ),
    ("knex", "partly", [knex_row(1, KNEX_1)], KNEX_1),
    ("knex", "fully", [knex_row(1, KNEX_1), knex_row(2, KNEX_2)], KNEX_2),
    ("django", "partly", [django_row(1, "shop", "0001_initial")], DJANGO_1),
    (
        "django",
        "several-apps",
        [
            django_row(1, "contenttypes", "0001_initial"),
            django_row(2, "shop", "0001_initial"),
            django_row(3, "contenttypes", "0002_remove_content_type_name"),
            django_row(4, "shop", "0002_create_orders"),
        ],
        "contenttypes:0002_remove_content_type_name,shop:0002_create_orders",
    ),
    ("sequelize", "partly", [{"name": SEQ_1}], SEQ_1),
    ("sequelize", "fully-inserted-out-of-order", [{"name": SEQ_2}, {"name": SEQ_1}], SEQ_2),
]


def write_table(url: str, tool: str, rows: list[dict[str, Any]]) -> None:
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            TABLES[tool].create(connection)
            if rows:
                connection.execute(TABLES[tool].insert(), rows)
    finally:
        engine.dispose()


@pytest.mark.parametrize("tool", sorted(TABLES))
def test_missing_table_reads_as_nothing_applied(tool: str, db_url: str) -> None:
    assert version_tables.read_revision(tool, db_url) is None


@pytest.mark.parametrize("tool", sorted(TABLES))
def test_empty_table_reads_as_nothing_applied(tool: str, db_url: str) -> None:
    write_table(db_url, tool, [])
    assert version_tables.read_revision(tool, db_url) is None


@pytest.mark.parametrize(
    ("tool", "rows", "expected"),
    [
        pytest.param(tool, rows, expected, id=f"{tool}-{name}")
        for tool, name, rows, expected in HISTORIES
    ],
)
def test_history_written_by_sql(
    tool: str, rows: list[dict[str, Any]], expected: str, db_url: str
) -> None:
    write_table(db_url, tool, rows)
    assert version_tables.read_revision(tool, db_url) == expected


# --------------------------------------------------------------------------- the real tools


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    fixture = {"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]
    yield request.getfixturevalue(fixture)


def flyway_command(command: list[str], env_file: Path) -> list[str]:
    """The adapter's command with the init container's file at a scratch path."""
    return [
        command[0],
        command[1],
        command[2].replace(flyway.ENV_FILE, str(env_file)),
        *command[3:],
    ]


def test_flyway(server_url: str, flyway_home: Path, tmp_path: Path) -> None:
    engine = database.identity_from_url(server_url).engine
    example = "flyway-postgresql" if engine == "postgresql" else "flyway-mariadb"
    # What the `lockstep dburl --format flyway` init container writes.
    env_file = tmp_path / "env"
    env_file.write_text(url_formats.render_env_file(url_formats.flyway_env(server_url)))
    adapter = tools.get_adapter("flyway")
    cwd, path = EXAMPLES / example, flyway_home / "bin"

    def flyway_run(target: str) -> None:
        run(
            flyway_command(adapter.upgrade_command(target), env_file),
            cwd=cwd,
            url=server_url,
            path=path,
        )

    assert version_tables.read_revision("flyway", server_url) is None
    flyway_run("1")
    assert version_tables.read_revision("flyway", server_url) == "1"
    flyway_run("head")
    assert version_tables.read_revision("flyway", server_url) == "2"
    flyway_run("head")  # nothing to do is success, and changes nothing
    assert version_tables.read_revision("flyway", server_url) == "2"
    with pytest.raises(errors.DowngradeUnsupported):
        adapter.downgrade_command("1")


def test_knex(server_url: str, node_home: Path) -> None:
    adapter = tools.get_adapter("knex")
    cwd, path = EXAMPLES / "knex-postgresql", node_home / "node_modules" / ".bin"
    extra = {"NODE_PATH": str(node_home / "node_modules")}

    def knex(command: list[str]) -> None:
        run(command, cwd=cwd, url=server_url, path=path, extra=extra)

    assert version_tables.read_revision("knex", server_url) is None
    knex(adapter.upgrade_command(KNEX_1))
    assert version_tables.read_revision("knex", server_url) == KNEX_1
    knex(adapter.upgrade_command("head"))
    assert version_tables.read_revision("knex", server_url) == KNEX_2
    knex(adapter.downgrade_command(KNEX_1))
    assert version_tables.read_revision("knex", server_url) == KNEX_1
    knex(adapter.downgrade_command("base"))
    assert version_tables.read_revision("knex", server_url) is None  # the table stays, empty


def test_knex_refuses_an_unknown_target_without_migrating(pg_url: str, node_home: Path) -> None:
    command = tools.get_adapter("knex").upgrade_command("20991231000000_nope.js")
    with pytest.raises(AssertionError, match="is not a Knex migration of this image"):
        run(
            command,
            cwd=EXAMPLES / "knex-postgresql",
            url=pg_url,
            path=node_home / "node_modules" / ".bin",
            extra={"NODE_PATH": str(node_home / "node_modules")},
        )
    assert version_tables.read_revision("knex", pg_url) is None


def test_sequelize(server_url: str, node_home: Path) -> None:
    adapter = tools.get_adapter("sequelize")
    cwd, path = EXAMPLES / "sequelize-mariadb", node_home / "node_modules" / ".bin"
    extra = {"NODE_PATH": str(node_home / "node_modules")}

    def sequelize(command: list[str]) -> None:
        run(command, cwd=cwd, url=server_url, path=path, extra=extra)

    assert version_tables.read_revision("sequelize", server_url) is None
    sequelize(adapter.upgrade_command(SEQ_1))
    assert version_tables.read_revision("sequelize", server_url) == SEQ_1
    sequelize(adapter.upgrade_command(SEQ_1))  # already there: success, no change
    assert version_tables.read_revision("sequelize", server_url) == SEQ_1
    sequelize(adapter.upgrade_command("head"))
    assert version_tables.read_revision("sequelize", server_url) == SEQ_2
    sequelize(adapter.downgrade_command(SEQ_1))
    assert version_tables.read_revision("sequelize", server_url) == SEQ_1
    sequelize(adapter.downgrade_command("base"))
    assert version_tables.read_revision("sequelize", server_url) is None


def test_prisma_migrate_on_postgresql(pg_url: str, node_home: Path, tmp_path: Path) -> None:
    """Prisma cannot stop part way, so "partly migrated" is an image with one migration."""
    adapter = tools.get_adapter("prisma")
    extra = {"NODE_PATH": str(node_home / "node_modules"), "CHECKPOINT_DISABLE": "1"}
    path = node_home / "node_modules" / ".bin"
    older_image = project_copy("prisma-postgresql", tmp_path)
    shutil.rmtree(older_image / "prisma" / "migrations" / PRISMA_2)

    assert version_tables.read_revision("prisma", pg_url) is None
    run(adapter.upgrade_command("head"), cwd=older_image, url=pg_url, path=path, extra=extra)
    assert version_tables.read_revision("prisma", pg_url) == PRISMA_1
    run(
        adapter.upgrade_command("head"),
        cwd=EXAMPLES / "prisma-postgresql",
        url=pg_url,
        path=path,
        extra=extra,
    )
    assert version_tables.read_revision("prisma", pg_url) == PRISMA_2
    with pytest.raises(errors.DowngradeUnsupported):
        adapter.downgrade_command(PRISMA_1)


@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "sqlite"])
def test_django(engine: str, django_home: Path, request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue(
        {"postgresql": "pg_url", "mariadb": "mariadb_url", "sqlite": "sqlite_url"}[engine]
    )
    adapter = tools.get_adapter("django")

    def manage(command: list[str]) -> None:
        run(command, cwd=EXAMPLES / "django-postgresql", url=url, path=django_home / "bin")

    assert version_tables.read_revision("django", url) is None
    manage(adapter.upgrade_command(DJANGO_1))
    assert version_tables.read_revision("django", url) == DJANGO_1
    manage(adapter.upgrade_command("head"))
    assert version_tables.read_revision("django", url) == DJANGO_2
    manage(adapter.downgrade_command(DJANGO_1))
    assert version_tables.read_revision("django", url) == DJANGO_1
    manage(adapter.downgrade_command("shop:zero"))
    assert version_tables.read_revision("django", url) is None
