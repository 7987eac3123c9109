"""`lockstep run --tool sql` on PostgreSQL starts without SQLAlchemy (issue 21).

Importing SQLAlchemy and setting up its engine was half of a run's fixed cost; the fast path
(lockstep.pod.pg_run) goes to psycopg directly. Here the run is pointed at a port where nothing
listens: it gets as far as connecting, having imported everything its path imports, and fails
the way a run fails on an unreachable server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from lockstep import database, db_identity, version_tables
from lockstep.pod import pg_history

RUN = (
    "import sys\n"
    "from lockstep.cli.main import main\n"
    "code = main(['run', '--tool', 'sql', '--source', sys.argv[1], '--result-file', sys.argv[2],"
    " '--lock-wait-seconds', '1'])\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))\n"
    "sys.exit(code)\n"
)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _run(tmp_path: Path, url: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    source = tmp_path / "sql"
    source.mkdir()
    (source / "V1__one.sql").write_text("CREATE TABLE one (id int);\n")
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(source), str(result_file)],
        capture_output=True,
        text=True,
        check=False,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
    )
    return done, json.loads(result_file.read_text())


def test_a_postgresql_sql_run_imports_no_sqlalchemy(tmp_path: Path) -> None:
    url = f"postgresql://app:secret-pw@127.0.0.1:{_closed_port()}/shop"
    done, result = _run(tmp_path, url)
    assert done.stdout.strip() == "[]", done.stderr
    assert result["reason"] == "DatabaseUnavailable", result
    assert "secret-pw" not in result["message"] + done.stderr


def test_a_mysql_sql_run_still_goes_through_sqlalchemy(tmp_path: Path) -> None:
    url = f"mysql://app:secret-pw@127.0.0.1:{_closed_port()}/shop"
    done, result = _run(tmp_path, url)
    assert "sqlalchemy" in done.stdout, done.stderr
    assert result["reason"] == "DatabaseUnavailable", result


URLS = [
    "postgresql://app:pw@DB.example.com:6543/shop",
    "postgres://app@db/shop",
    "postgresql+psycopg://app:pw@db/shop?sslmode=require&connect_timeout=3",
    "postgresql://app:p%40ss%2Fword@db:5432/sh%20op",
    "postgresql://app:p@ss/w?rd@db/shop",  # unencoded delimiters in the password
    "postgresql://app:pw@[::1]:5433/shop",
    "postgresql://app:pw@/shop",
    "postgresql:///shop",
    "postgresql://app:pw@db/shop?options=-c%20search_path%3Dapp",
]


def test_the_fast_path_reads_postgresql_urls_as_sqlalchemy_does() -> None:
    from sqlalchemy.dialects.postgresql import psycopg as dialect_module

    dialect = dialect_module.dialect()
    for url in URLS:
        parsed = db_identity.postgres_connect_params(url)
        assert parsed is not None, url
        identity, params = parsed
        assert identity == database.identity_from_url(url), url
        _args, expected = dialect.create_connect_args(database.driver_url(url))
        assert params == expected, url


def test_urls_the_fast_path_does_not_read_alike_go_to_sqlalchemy() -> None:
    for url in (
        "mysql://app:pw@db/shop",
        "sqlite:///x.db",
        "postgresql://app:pw@db",  # no database: SQLAlchemy's path words the refusal
        "postgresql://app:pw@db/shop?host=/run/socket",
        "postgresql://app:pw@h1,h2/shop",
        "postgresql://app:pw@db/shop?sslmode=require&sslmode=disable",
        "postgresql+asyncpg://app:pw@db/shop",
    ):
        assert db_identity.postgres_connect_params(url) is None, url


def _ddl(table: sa.Table) -> str:
    text = str(CreateTable(table).compile(dialect=postgresql.dialect())).strip()
    return text.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)


def test_the_fast_path_creates_the_tables_sqlalchemy_would() -> None:
    history = version_tables.sql_history_in("app", "lockstep_schema_history")
    owners = version_tables._owners_in("app")
    assert pg_history.HISTORY_DDL.format(table="app.lockstep_schema_history") == _ddl(history)
    assert pg_history.OWNERS_DDL.format(table="app.lockstep_version_table_owners") == _ddl(owners)
    assert tuple(c.name for c in history.columns) == pg_history.HISTORY_COLUMNS
