"""Shadow rehearsal before the real run, on PostgreSQL, MariaDB and SQLite.

Each test gets a real database (``db_url``) and a second, disposable one on the same
server (``shadow_url``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import column_names, execute, tables
from lockstep import database, errors, version_tables
from lockstep.pod import rehearsal, runner
from lockstep.pod.run_request import RunRequest, RunResult, Tool

pytestmark = pytest.mark.integration

SHOP_TABLES = {"customers", "orders", "migration_log", "lockstep_schema_history"}
UPGRADE_STEPS = ["upgrade to 3", "downgrade to base", "upgrade to 3"]
BROKEN_UNDO = "DELETE FROM migration_log WHERE version = '3';\nDROP TABLE no_such_table;\n"
BROKEN_ALEMBIC_REVISION = '''"""A revision whose downgrade fails."""

import sqlalchemy as sa
from alembic import op

revision = "a1000004"
down_revision = "a1000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("coupons", sa.Column("code", sa.String(20), primary_key=True))


def downgrade() -> None:
    op.drop_table("no_such_table")
'''


@pytest.fixture
def source(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop's SQL migrations (V1-V3 with U files)."""
    return Path(shutil.copytree(fixtures_dir / "sql" / "shop", tmp_path / "migrations"))


@pytest.fixture
def scripts(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop's Alembic scripts."""
    return Path(shutil.copytree(fixtures_dir / "alembic" / "shop", tmp_path / "alembic"))


@pytest.fixture
def shadow_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database beside ``db_url``, on the same server."""
    family = database.identity_from_url(db_url).family
    if family == "sqlite":
        yield f"sqlite:///{tmp_path / 'shadow.db'}"
        return
    name = f"lockstep_shadow_{uuid.uuid4().hex[:12]}"
    server = make_url(db_url)
    if family == "postgresql":
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    mariadb_execute(db_url, f"CREATE DATABASE `{name}`")
    yield server.set(database=name).render_as_string(hide_password=False)
    mariadb_execute(db_url, f"DROP DATABASE IF EXISTS `{name}`")


def mariadb_execute(url: str, statement: str) -> None:
    server = make_url(url)
    with (
        pymysql.connect(
            host=server.host,
            port=server.port or 3306,
            user=server.username,
            password=server.password or "",
            autocommit=True,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)


def request_for(url: str, source: Path, tool: Tool = "sql", **options: Any) -> RunRequest:
    settings: dict[str, Any] = {"lock_wait_seconds": 10.0, "statement_lock_timeout": "5s"}
    settings.update(options)
    return RunRequest(tool=tool, source_dir=source, database_url=url, **settings)


def migrate(url: str, source: Path, tool: Tool = "sql", **options: Any) -> RunResult:
    return runner.run(request_for(url, source, tool, **options))


def rehearsed(url: str, shadow: str, source: Path, tool: Tool = "sql", **options: Any) -> RunResult:
    """A run that rehearses on ``shadow`` first."""
    check = rehearsal.rehearsal_check(shadow, url)
    return runner.run(request_for(url, source, tool, **options), [check])


def applied_revision(url: str, tool: str = "sql") -> str | None:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return version_tables.read_applied_revision(tool, connection)
    finally:
        engine.dispose()


def lockstep_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SHADOW_URL")}
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=180,
        check=False,
    )


# --------------------------------------------------------------------------- success


class TestRehearsalPasses:
    def test_the_real_database_is_migrated_after_the_rehearsal(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        result = rehearsed(db_url, shadow_url, source)
        assert result.applied == ["1", "2", "3"]
        assert applied_revision(db_url) == "3"
        assert tables(db_url) == SHOP_TABLES
        assert result.extras["rehearsal"]["steps"] == UPGRADE_STEPS
        # The shadow ends where the rehearsal left it: at the target.
        assert applied_revision(shadow_url) == "3"

    def test_goes_back_down_to_where_the_real_database_is(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        migrate(db_url, source, target="1")
        result = rehearsed(db_url, shadow_url, source)
        assert result.extras["rehearsal"]["steps"] == [
            "upgrade to 3",
            "downgrade to 1",
            "upgrade to 3",
        ]
        assert (result.from_revision, result.applied) == ("1", ["2", "3"])

    def test_a_downgrade_is_rehearsed_both_ways_twice(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        migrate(db_url, source)
        result = rehearsed(db_url, shadow_url, source, target="1", allow_downgrade=True)
        assert result.extras["rehearsal"]["steps"] == [
            "upgrade to 3",
            "downgrade to 1",
            "upgrade to 3",
            "downgrade to 1",
        ]
        assert applied_revision(db_url) == "1"
        assert applied_revision(shadow_url) == "1"

    def test_nothing_to_do_needs_no_rehearsal(
        self, sqlite_url: str, tmp_path: Path, source: Path
    ) -> None:
        migrate(sqlite_url, source)
        shadow = f"sqlite:///{tmp_path / 'shadow.db'}"
        result = rehearsed(sqlite_url, shadow, source)
        assert result.extras["rehearsal"] == {"skipped": "nothing to apply"}
        assert not (tmp_path / "shadow.db").exists()

    def test_alembic_scripts(self, db_url: str, shadow_url: str, scripts: Path) -> None:
        result = rehearsed(db_url, shadow_url, scripts, tool="alembic")
        assert result.extras["rehearsal"]["steps"] == [
            "upgrade to a1000003",
            "downgrade to base",
            "upgrade to a1000003",
        ]
        assert applied_revision(db_url, "alembic") == "a1000003"


class TestShadowReset:
    def test_whatever_was_in_the_shadow_is_gone(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        family = database.identity_from_url(db_url).family
        leftovers = [
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, legacy VARCHAR(10))",
            "CREATE TABLE leftover_child (id INTEGER PRIMARY KEY, customer_id INTEGER "
            "REFERENCES customers (id))",
            "CREATE VIEW leftover_view AS SELECT id FROM customers",
            "CREATE INDEX leftover_index ON leftover_child (customer_id)",
        ]
        if family == "postgresql":
            leftovers += ["CREATE SCHEMA leftover", "CREATE TABLE leftover.things (id INTEGER)"]
        if family == "mysql":
            leftovers += ["CREATE PROCEDURE leftover_procedure() SELECT 1"]
        execute(shadow_url, *leftovers)
        rehearsed(db_url, shadow_url, source)
        assert tables(shadow_url) == SHOP_TABLES
        if family == "postgresql":
            schemas = scalar_list(
                shadow_url,
                "SELECT nspname FROM pg_namespace WHERE left(nspname, 3) <> 'pg_' "
                "AND nspname <> 'information_schema'",
            )
            assert schemas == ["public"]


def scalar_list(url: str, query: str) -> list[Any]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query)).scalars())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- failure


class TestRehearsalFails:
    def test_a_broken_undo_file_stops_the_run_before_the_real_database(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        (source / "U3__add_customer_email.sql").write_text(BROKEN_UNDO)
        with pytest.raises(rehearsal.RehearsalFailed) as caught:
            rehearsed(db_url, shadow_url, source)
        message = str(caught.value)
        assert caught.value.reason == "RehearsalFailed"
        assert message.startswith(
            "rehearsal step 2 of 3 (downgrade to base on the shadow database) failed: "
            "U3__add_customer_email.sql "
        )
        assert "line 2" in message  # rolled back, or (MariaDB) partly applied: on the shadow
        assert message.endswith("; the real database was not touched")
        assert tables(db_url) == set()

    def test_names_the_revision_the_real_database_is_at(
        self, db_url: str, shadow_url: str, source: Path
    ) -> None:
        migrate(db_url, source, target="2")
        (source / "U3__add_customer_email.sql").write_text(BROKEN_UNDO)
        with pytest.raises(rehearsal.RehearsalFailed, match=r"^rehearsal step 2 of 3 \(downgrade "):
            rehearsed(db_url, shadow_url, source)
        assert applied_revision(db_url) == "2"
        assert tables(db_url) == SHOP_TABLES
        assert "email" not in column_names(db_url, "customers")

    def test_a_broken_alembic_downgrade(self, db_url: str, shadow_url: str, scripts: Path) -> None:
        migrate(db_url, scripts, tool="alembic")
        (scripts / "versions" / "a1000004_coupons.py").write_text(BROKEN_ALEMBIC_REVISION)
        with pytest.raises(
            rehearsal.RehearsalFailed,
            match=r"^rehearsal step 2 of 3 \(downgrade to a1000003 on the shadow database\)",
        ):
            rehearsed(db_url, shadow_url, scripts, tool="alembic")
        assert applied_revision(db_url, "alembic") == "a1000003"
        assert "coupons" not in tables(db_url)

    def test_an_unreachable_shadow(self, pg_url: str, source: Path) -> None:
        shadow = make_url(pg_url).set(password="wrong-shadow-secret")
        url = shadow.set(database="lockstep_no_such_shadow").render_as_string(hide_password=False)
        with pytest.raises(rehearsal.RehearsalFailed) as caught:
            rehearsed(pg_url, url, source)
        assert "wrong-shadow-secret" not in str(caught.value)
        assert str(caught.value).startswith("rehearsal: reading the shadow database failed")
        assert tables(pg_url) == set()


# --------------------------------------------------------------------------- not the real one


class TestShadowIsNotTheRealDatabase:
    def test_the_same_url_is_refused(self, db_url: str, source: Path) -> None:
        migrate(db_url, source, target="1")
        with pytest.raises(errors.InvalidRequest, match="is the database being migrated"):
            rehearsed(db_url, db_url, source)
        assert applied_revision(db_url) == "1"

    @pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
    def test_another_host_name_for_the_same_database_is_refused(
        self, server: str, source: Path, request: pytest.FixtureRequest
    ) -> None:
        url: str = request.getfixturevalue(server)
        migrate(url, source, target="1")
        alias = make_url(url).set(host="localhost").render_as_string(hide_password=False)
        assert database.identity_from_url(alias) != database.identity_from_url(url)
        with pytest.raises(errors.InvalidRequest, match="is the database being migrated"):
            rehearsed(url, alias, source)
        assert applied_revision(url) == "1"
        assert tables(url) == SHOP_TABLES - {"orders"}

    def test_a_symlink_to_the_sqlite_file_is_refused(
        self, sqlite_url: str, source: Path, tmp_path: Path
    ) -> None:
        migrate(sqlite_url, source, target="1")
        link = tmp_path / "link.db"
        link.symlink_to(database.identity_from_url(sqlite_url).database)
        with pytest.raises(errors.InvalidRequest, match="is the database being migrated"):
            rehearsed(sqlite_url, f"sqlite:///{link}", source)
        assert applied_revision(sqlite_url) == "1"

    def test_another_engine_is_refused(self, sqlite_url: str, pg_url: str) -> None:
        with pytest.raises(errors.InvalidRequest, match="only proves something on the same engine"):
            rehearsal.rehearsal_check(pg_url, sqlite_url)


# --------------------------------------------------------------------------- lockstep run


class TestRunCommand:
    def run_cli(
        self, url: str, shadow: str, source: Path, result_file: Path
    ) -> subprocess.CompletedProcess[str]:
        return lockstep_cli(
            {"DATABASE_URL": url, "SHADOW_URL": shadow},
            *("run", "--tool", "sql", "--source", str(source), "--plan-salt", "spec-1"),
            *("--shadow-url-env", "SHADOW_URL", "--result-file", str(result_file)),
        )

    def test_success(self, db_url: str, shadow_url: str, source: Path, tmp_path: Path) -> None:
        result_file = tmp_path / "termination-log"
        completed = self.run_cli(db_url, shadow_url, source, result_file)
        assert completed.returncode == 0, completed.stderr
        report = json.loads(result_file.read_text())
        assert report["result"] == "Succeeded"
        assert report["rehearsal"]["steps"] == UPGRADE_STEPS
        assert report["plan"]["classification"] == "Additive"
        assert "rehearsal step 3 of 3 (upgrade to 3 on the shadow database)" in completed.stderr
        assert_no_passwords(completed, db_url, shadow_url)
        assert applied_revision(db_url) == "3"

    def test_failure_has_its_own_reason_and_exit_code(
        self, db_url: str, shadow_url: str, source: Path, tmp_path: Path
    ) -> None:
        (source / "U3__add_customer_email.sql").write_text(BROKEN_UNDO)
        result_file = tmp_path / "termination-log"
        completed = self.run_cli(db_url, shadow_url, source, result_file)
        assert completed.returncode == 5
        assert "error (RehearsalFailed): rehearsal step 2 of 3" in completed.stderr
        report = json.loads(result_file.read_text())
        assert (report["result"], report["reason"]) == ("Failed", "RehearsalFailed")
        assert "the real database was not touched" in report["message"]
        assert_no_passwords(completed, db_url, shadow_url)
        assert tables(db_url) == set()

    def test_a_missing_shadow_variable(self, sqlite_url: str, source: Path, tmp_path: Path) -> None:
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            {"DATABASE_URL": sqlite_url},
            *("run", "--tool", "sql", "--source", str(source), "--shadow-url-env", "SHADOW_URL"),
            *("--result-file", str(result_file)),
        )
        assert completed.returncode == 1
        assert "$SHADOW_URL is not set" in completed.stderr
        assert json.loads(result_file.read_text())["reason"] == "InvalidSpec"
        assert tables(sqlite_url) == set()

    def test_shadow_equal_to_real(self, db_url: str, source: Path, tmp_path: Path) -> None:
        result_file = tmp_path / "termination-log"
        completed = self.run_cli(db_url, db_url, source, result_file)
        assert completed.returncode == 1
        assert "is the database being migrated" in completed.stderr
        assert_no_passwords(completed, db_url)
        assert tables(db_url) == set()


def assert_no_passwords(completed: subprocess.CompletedProcess[str], *urls: str) -> None:
    for url in urls:
        password = make_url(url).password
        if password:
            assert password not in completed.stdout
            assert password not in completed.stderr
