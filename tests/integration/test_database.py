"""Engines against real servers, and the tools' version-table readers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from lockstep import database, errors, version_tables

pytestmark = pytest.mark.integration


def execute(url: str, *statements: str, params: dict[str, Any] | None = None) -> None:
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement), params or {})
    finally:
        engine.dispose()


class TestEngines:
    def test_connects(self, db_url: str) -> None:
        engine = database.make_engine(db_url)
        try:
            with database.connect(engine, db_url) as connection:
                assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()

    def test_unreachable_database_is_reported_without_the_password(self, pg_url: str) -> None:
        secret = "wr0ng-Passw0rd"
        url = make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
        engine = database.make_engine(url)
        with pytest.raises(errors.DatabaseUnavailable) as caught:
            database.connect(engine, url)
        message = str(caught.value)
        assert "password authentication failed" in message
        assert secret not in message
        assert ":***@" in message
        assert caught.value.__cause__ is None  # the driver's error (with the URL) is not chained

    def test_no_server_listening(self) -> None:
        url = "mysql://u:secret-pw@127.0.0.1:1/shop"
        with pytest.raises(
            errors.DatabaseUnavailable, match="cannot connect to mysql://u:\\*\\*\\*@"
        ):
            database.connect(database.make_engine(url), url)

    def test_sqlite_ddl_is_transactional(self, sqlite_url: str) -> None:
        engine = database.make_engine(sqlite_url)
        with engine.connect() as connection:
            with connection.begin() as transaction:
                connection.exec_driver_sql("CREATE TABLE t (id INTEGER)")
                transaction.rollback()
            assert not sa.inspect(connection).has_table("t")
        engine.dispose()


def history_row(version: str, *, success: bool = True) -> dict[str, Any]:
    return {
        "version": version,
        "description": f"v{version}",
        "checksum": "0" * 64,
        "applied_at": datetime.now(UTC),
        "execution_ms": 1,
        "success": success,
    }


def create_history(url: str, *rows: dict[str, Any]) -> None:
    engine = database.make_engine(url)
    with engine.begin() as connection:
        version_tables.metadata.create_all(connection)
        if rows:
            connection.execute(sa.insert(version_tables.sql_history), list(rows))
    engine.dispose()


class TestSqlVersionReader:
    def test_missing_table(self, db_url: str) -> None:
        assert version_tables.read_revision("sql", db_url) is None

    def test_empty_table(self, db_url: str) -> None:
        create_history(db_url)
        assert version_tables.read_revision("sql", db_url) is None

    def test_full_table_gives_the_numerically_newest(self, db_url: str) -> None:
        create_history(db_url, *(history_row(v) for v in ("1", "2", "9", "10", "1.5")))
        assert version_tables.read_revision("sql", db_url) == "10"

    def test_partial_table_ignores_a_failed_version(self, db_url: str) -> None:
        create_history(db_url, history_row("1"), history_row("2"), history_row("3", success=False))
        assert version_tables.read_revision("sql", db_url) == "2"

    def test_only_failed(self, db_url: str) -> None:
        create_history(db_url, history_row("1", success=False))
        assert version_tables.read_revision("sql", db_url) is None


class TestAlembicVersionReader:
    def test_missing_table(self, db_url: str) -> None:
        assert version_tables.read_revision("alembic", db_url) is None

    def test_empty_table(self, db_url: str) -> None:
        execute(db_url, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        assert version_tables.read_revision("alembic", db_url) is None

    def test_one_head(self, db_url: str) -> None:
        execute(
            db_url,
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
            "INSERT INTO alembic_version (version_num) VALUES ('ae1027a6acf')",
        )
        assert version_tables.read_revision("alembic", db_url) == "ae1027a6acf"

    def test_branches_are_joined(self, db_url: str) -> None:
        execute(
            db_url,
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
            "INSERT INTO alembic_version (version_num) VALUES ('bbb'), ('aaa')",
        )
        assert version_tables.read_revision("alembic", db_url) == "aaa,bbb"
