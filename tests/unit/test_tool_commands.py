"""The commands the tool adapters give a migration Job, and their pure helpers.

The shell loops for Knex and Sequelize are exercised against the real tools in
tests/integration/test_tool_readers.py; here they are checked for syntax and
for keeping the target out of the script text.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from lockstep import constants, errors, tools
from lockstep.errors import InvalidDatabaseUrl
from lockstep.pod import url_formats
from lockstep.tools import django, flyway, knex, prisma, sequelize

USER_IMAGE_TOOLS = {
    "flyway": "flyway_schema_history",
    "prisma": "_prisma_migrations",
    "knex": "knex_migrations",
    "django": "django_migrations",
    "sequelize": "SequelizeMeta",
}
HOSTILE_TARGET = "x'; rm -rf / #$(reboot)`id`"


@pytest.mark.parametrize(("tool", "table"), USER_IMAGE_TOOLS.items())
def test_registered_with_their_version_table(tool: str, table: str) -> None:
    adapter = tools.get_adapter(tool)
    assert adapter.name == tool
    assert adapter.version_table == table
    assert not adapter.builtin


@pytest.mark.parametrize(
    ("tool", "target", "command"),
    [
        ("prisma", "head", ["prisma", "migrate", "deploy"]),
        ("prisma", " HEAD ", ["prisma", "migrate", "deploy"]),
        ("knex", "head", ["knex", "migrate:latest"]),
        ("sequelize", "head", ["sequelize-cli", "db:migrate"]),
        ("django", "head", ["python", "manage.py", "migrate", "--noinput"]),
        ("django", "shop", ["python", "manage.py", "migrate", "--noinput", "shop"]),
        (
            "django",
            "shop:0002_create_orders",
            ["python", "manage.py", "migrate", "--noinput", "shop", "0002_create_orders"],
        ),
    ],
)
def test_plain_upgrade_commands(tool: str, target: str, command: list[str]) -> None:
    assert tools.get_adapter(tool).upgrade_command(target) == command


@pytest.mark.parametrize(
    ("tool", "target", "command"),
    [
        ("knex", "base", ["knex", "migrate:rollback", "--all"]),
        ("knex", "0", ["knex", "migrate:rollback", "--all"]),
        ("sequelize", "base", ["sequelize-cli", "db:migrate:undo:all"]),
        (
            "django",
            "shop:0001_initial",
            ["python", "manage.py", "migrate", "--noinput", "shop", "0001_initial"],
        ),
        ("django", "shop:zero", ["python", "manage.py", "migrate", "--noinput", "shop", "zero"]),
    ],
)
def test_plain_downgrade_commands(tool: str, target: str, command: list[str]) -> None:
    assert tools.get_adapter(tool).downgrade_command(target) == command


@pytest.mark.parametrize(
    ("tool", "target", "expected"),
    [
        ("flyway", "x", "Flyway Community cannot undo migrations"),
        ("prisma", "x", "Prisma Migrate has no down migrations"),
        ("knex", "head", "not head"),
        ("sequelize", "head", "not head"),
        ("django", "head", "app:migration"),
        ("django", "base", "app:migration"),
        ("django", "shop", "app:migration"),
    ],
)
def test_downgrades_that_cannot_happen_say_what_to_do(
    tool: str, target: str, expected: str
) -> None:
    with pytest.raises(errors.DowngradeUnsupported) as caught:
        tools.get_adapter(tool).downgrade_command(target)
    assert expected in caught.value.message
    assert caught.value.reason == "DowngradeUnsupported"


def test_prisma_reaches_head_only() -> None:
    with pytest.raises(errors.TargetUnsupported) as caught:
        prisma.PrismaAdapter().upgrade_command("20240101120000_create_customers")
    assert "set spec.target to head" in caught.value.message
    assert caught.value.reason == "TargetUnsupported"


@pytest.mark.parametrize(
    ("target", "flag"), [("head", "-target=latest"), ("2", "-target=2"), (" 1.1 ", "-target=1.1")]
)
def test_flyway_sources_the_converted_url_migrates_then_validates(target: str, flag: str) -> None:
    """Validate after migrate: Flyway 12 can exit 0 after a migration failed (connection lost)."""
    command = flyway.FlywayAdapter().upgrade_command(target)
    assert command[:2] == ["sh", "-c"]
    assert command[2] == (
        f'. {flyway.ENV_FILE} && flyway "$@" migrate && exec flyway "$@" validate'
    )
    assert command[3:] == ["flyway", flag]


def test_flyway_asks_for_the_url_conversion() -> None:
    assert flyway.FlywayAdapter.url_format == "flyway"
    assert flyway.URL_FORMAT in url_formats.FORMATS


@pytest.mark.parametrize(
    ("adapter", "step"),
    [
        (knex.KnexAdapter().upgrade_command, "up"),
        (knex.KnexAdapter().downgrade_command, "down"),
        (sequelize.SequelizeAdapter().upgrade_command, "up"),
        (sequelize.SequelizeAdapter().downgrade_command, "down"),
        (flyway.FlywayAdapter().upgrade_command, "up"),
    ],
)
def test_targets_travel_as_arguments_never_as_script(adapter: object, step: str) -> None:
    command = adapter(HOSTILE_TARGET)  # type: ignore[operator]
    assert command[:2] == ["sh", "-c"]
    script = command[2]
    assert HOSTILE_TARGET not in script
    assert any(arg.endswith(HOSTILE_TARGET) for arg in command[3:])
    # POSIX sh parses the script (no run): a typo would only show in a cluster.
    subprocess.run(["sh", "-n", "-c", script], check=True)


@pytest.mark.parametrize(
    "tool_and_command",
    [
        ("flyway", ["sh", "-c", '. /lockstep/env && exec flyway "$@"', "flyway", "info"]),
        ("prisma", ["prisma", "migrate", "status"]),
        ("knex", ["knex", "migrate:list"]),
        ("sequelize", ["sequelize-cli", "db:migrate:status"]),
        ("django", ["python", "manage.py", "showmigrations", "--plan"]),
    ],
)
def test_status_commands(tool_and_command: tuple[str, list[str]]) -> None:
    tool, command = tool_and_command
    adapter = tools.get_adapter(tool)
    assert adapter.status_command() == command  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- Flyway history


def row(
    rank: int, version: str | None, kind: str = "SQL", success: bool = True
) -> flyway.HistoryRow:
    return flyway.HistoryRow(rank, version, kind, success)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], None),
        ([row(1, "0", "SCHEMA")], None),
        ([row(1, "1"), row(2, None), row(3, "2")], "2"),
        ([row(1, "1"), row(2, "2", success=False)], "1"),
        ([row(1, "1.9"), row(2, "1.10")], "1.10"),
        ([row(2, "1.10"), row(1, "1.9")], "1.10"),
        ([row(1, "1"), row(2, "2"), row(3, "2", "UNDO_SQL")], "1"),
        ([row(1, "1"), row(2, "2"), row(3, "2", "DELETE")], "1"),
        ([row(1, "5", "BASELINE"), row(2, "6")], "6"),
        ([row(1, "1"), row(2, "2"), row(3, "2", "UNDO_SQL", success=False)], "2"),
        ([row(1, "1"), row(2, None, "SQL"), row(3, None, "JDBC")], "1"),
    ],
    ids=[
        "empty",
        "schema-marker",
        "repeatable-ignored",
        "failed-ignored",
        "numeric-order",
        "rank-order",
        "undone",
        "deleted-by-repair",
        "baseline",
        "failed-undo",
        "repeatables-only-after",
    ],
)
def test_flyway_current_version(rows: list[flyway.HistoryRow], expected: str | None) -> None:
    assert flyway.current_version(rows) == expected


def test_flyway_version_key_ignores_trailing_zeros() -> None:
    assert flyway.version_key("1.0") == flyway.version_key("1")
    assert flyway.version_key("1_1") == flyway.version_key("1.1")
    assert flyway.version_key("2") > flyway.version_key("1.99")


# --------------------------------------------------------------------------- Django revisions


def test_django_revision_round_trip() -> None:
    positions = {"shop": "0002_create_orders", "auth": "0012_alter_user"}
    revision = django.format_revision(positions)
    assert revision == "auth:0012_alter_user,shop:0002_create_orders"
    assert django.parse_revision(revision) == positions
    assert django.format_revision({}) is None
    assert django.parse_revision(None) == {}


@pytest.mark.parametrize(
    ("target", "split"),
    [
        ("shop", ("shop", None)),
        ("shop:0001_initial", ("shop", "0001_initial")),
        ("shop:", ("shop", None)),
    ],
)
def test_django_split_target(target: str, split: tuple[str, str | None]) -> None:
    assert django.split_target(target) == split


# --------------------------------------------------------------------------- URL formats


@pytest.mark.parametrize(
    ("url", "jdbc", "user", "password"),
    [
        (
            "postgresql://shop:s3cret@db.example.com:5433/shop",
            "jdbc:postgresql://db.example.com:5433/shop?ApplicationName=lockstep-migration",
            "shop",
            "s3cret",
        ),
        (
            "postgresql+psycopg://shop:pw@db/shop?sslmode=require",
            "jdbc:postgresql://db:5432/shop?sslmode=require&ApplicationName=lockstep-migration",
            "shop",
            "pw",
        ),
        (
            "postgres://shop@db/shop",
            "jdbc:postgresql://db:5432/shop?ApplicationName=lockstep-migration",
            "shop",
            None,
        ),
        (
            "mariadb://shop:pw@maria:3306/shop?charset=utf8mb4",
            "jdbc:mariadb://maria:3306/shop",
            "shop",
            "pw",
        ),
        (
            "mysql+pymysql://shop:pw@mysql/shop",
            "jdbc:mysql://mysql:3306/shop?permitMysqlScheme=true",
            "shop",
            "pw",
        ),
        (
            "postgresql://u:pw1@[::1]:5432/db",
            "jdbc:postgresql://[::1]:5432/db?ApplicationName=lockstep-migration",
            "u",
            "pw1",
        ),
        (
            "postgresql://u:p%40ss%2Fw@h/db",
            "jdbc:postgresql://h:5432/db?ApplicationName=lockstep-migration",
            "u",
            "p@ss/w",
        ),
    ],
)
def test_jdbc_connection(url: str, jdbc: str, user: str, password: str | None) -> None:
    connection = url_formats.jdbc_connection(url)
    assert connection == url_formats.JdbcConnection(jdbc, user, password)
    # The password goes in its own variable, never in the JDBC URL.
    assert password is None or password not in connection.url


def test_postgresql_jdbc_urls_carry_the_migration_tag_even_when_the_user_set_another() -> None:
    """pgjdbc ignores PGAPPNAME: the tag the fence looks for must be in the URL, and be ours."""
    connection = url_formats.jdbc_connection("postgresql://u:p@h/db?application_name=mine")
    assert connection.url == "jdbc:postgresql://h:5432/db?ApplicationName=lockstep-migration"
    mysql = url_formats.jdbc_connection("mysql://u:p@h/db")
    assert "ApplicationName" not in mysql.url


def test_flyway_on_mysql_takes_the_run_mark_on_each_connection() -> None:
    """MySQL drivers send no tag: Flyway's initSql takes the run's mark, for the fence."""
    for url in ("mysql://u:p@h/db", "mariadb://u:p@h/db"):
        assert url_formats.flyway_env(url)["FLYWAY_INIT_SQL"] == constants.RUN_MARK_SQL
    assert "FLYWAY_INIT_SQL" not in url_formats.flyway_env("postgresql://u:p@h/db")


def test_sqlite_becomes_a_jdbc_file_url() -> None:
    connection = url_formats.jdbc_connection("sqlite:////var/lib/shop.db")
    assert connection == url_formats.JdbcConnection("jdbc:sqlite:/var/lib/shop.db", None, None)


def test_flyway_and_jdbc_env() -> None:
    url = "postgresql://shop:pw@db/shop"
    assert url_formats.env_for("flyway", url) == {
        "FLYWAY_URL": "jdbc:postgresql://db:5432/shop?ApplicationName=lockstep-migration",
        "FLYWAY_USER": "shop",
        "FLYWAY_PASSWORD": "pw",
    }
    assert url_formats.env_for("jdbc", url) == {
        "JDBC_URL": "jdbc:postgresql://db:5432/shop?ApplicationName=lockstep-migration",
        "JDBC_USER": "shop",
        "JDBC_PASSWORD": "pw",
    }
    assert url_formats.describe(url_formats.flyway_env(url)) == (
        "FLYWAY_PASSWORD, FLYWAY_URL, FLYWAY_USER"
    )


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known formats: flyway, jdbc"):
        url_formats.env_for("liquibase-xml", "postgresql://u:p@h/db")


def test_a_bad_url_is_reported_without_its_password() -> None:
    with pytest.raises(InvalidDatabaseUrl) as caught:
        url_formats.flyway_env("oracle://scott:tiger-password@h/db")
    assert "tiger-password" not in caught.value.message


def test_env_file_survives_any_password() -> None:
    password = "p'a\"s s$(id)`x`\\n;|&*"
    text = url_formats.render_env_file({"FLYWAY_PASSWORD": password, "FLYWAY_USER": "u"})
    lines = text.splitlines()
    assert lines[0].startswith("export FLYWAY_PASSWORD=")
    assert shlex.split(lines[0].removeprefix("export ")) == [f"FLYWAY_PASSWORD={password}"]
    # What a shell actually sets when it sources the file.
    printed = subprocess.run(
        ["sh", "-c", f'{text}printf %s "$FLYWAY_PASSWORD"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == password


def test_env_file_rejects_names_a_shell_would_misread() -> None:
    with pytest.raises(ValueError, match="not a shell variable name"):
        url_formats.render_env_file({"FLYWAY-URL": "x"})
