"""Lockstep's pod commands with split credentials (the `LOCKSTEP_DB_*` variables a Job sets from
spec.database.connection) against the real PostgreSQL server: `lockstep run` migrates as a role
whose password holds every URL delimiter, `lockstep dburl --format url` writes a URL a driver
reads back whole, and a wrong password fails with a message that shows none of it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.integration

PASSWORD = "p@ss:w/rd%41#frag?x=1&y 2'\""
LOCKSTEP = [sys.executable, "-m", "lockstep.cli"]


@pytest.fixture
def role_database(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    user, name = f"split_{suffix}", f"lockstep_split_{suffix}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(PASSWORD)
            )
        )
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
    url = make_url(postgres_admin_url)
    try:
        yield {
            "LOCKSTEP_DB_ENGINE": "postgresql",
            "LOCKSTEP_DB_HOST": str(url.host),
            "LOCKSTEP_DB_PORT": str(url.port),
            "LOCKSTEP_DB_NAME": name,
            "LOCKSTEP_DB_USER": user,
            "LOCKSTEP_DB_PASSWORD": PASSWORD,
            "LOCKSTEP_DB_PARAMS": "connect_timeout=5",
        }
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{user}"')


def _lockstep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [*LOCKSTEP, *args], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_run_migrates_as_the_role_with_the_hostile_password(
    role_database: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "V1__t.sql").write_text("CREATE TABLE split_t (id int);")
    result_file = tmp_path / "result"
    done = _lockstep(
        role_database,
        "run", "--tool", "sql", "--source", str(tmp_path), "--target", "head",
        "--result-file", str(result_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with psycopg.connect(
        host=role_database["LOCKSTEP_DB_HOST"],
        port=int(role_database["LOCKSTEP_DB_PORT"]),
        dbname=role_database["LOCKSTEP_DB_NAME"],
        user=role_database["LOCKSTEP_DB_USER"],
        password=PASSWORD,
    ) as connection:
        owner = connection.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'split_t'"
        ).fetchone()
    assert owner == (role_database["LOCKSTEP_DB_USER"],)
    assert PASSWORD not in done.stdout + done.stderr


def test_dburl_writes_a_url_the_driver_reads_back_whole(
    role_database: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "env"
    done = _lockstep(role_database, "dburl", "--format", "url", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "DATABASE_URL" in done.stdout and PASSWORD not in done.stdout
    shell = subprocess.run(
        ["sh", "-c", f'. {out} && printf %s "$DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    url = shell.stdout
    assert make_url(url).password == PASSWORD
    with psycopg.connect(url.split("?")[0]) as connection:  # libpq decodes the URI too
        assert connection.execute("SELECT current_user").fetchone() == (
            role_database["LOCKSTEP_DB_USER"],
        )
    assert oct(out.stat().st_mode & 0o777) == "0o640"


def test_a_wrong_password_is_reported_without_any_form_of_it(
    role_database: dict[str, str], tmp_path: Path
) -> None:
    wrong = {**role_database, "LOCKSTEP_DB_PASSWORD": PASSWORD + "-wrong"}
    (tmp_path / "V1__t.sql").write_text("CREATE TABLE t (id int);")
    result_file = tmp_path / "result"
    failed = _lockstep(
        wrong,
        "run", "--tool", "sql", "--source", str(tmp_path), "--target", "head",
        "--result-file", str(result_file),
    )  # fmt: skip
    lock = _lockstep(wrong, "lock", "--wait-seconds", "1", "--ready-file", str(tmp_path / "r"))
    assert failed.returncode != 0 and lock.returncode != 0
    said = failed.stdout + failed.stderr + result_file.read_text() + lock.stdout + lock.stderr
    assert "password authentication failed" in said  # the real reason is there
    for form in (PASSWORD, quote(PASSWORD, safe=""), "p@ss:w/rd", "frag?x=1"):
        assert form not in said, form
