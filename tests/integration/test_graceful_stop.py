"""SIGTERM to `lockstep run` on real servers: the statement is cancelled, the report is true.

Kubernetes sends SIGTERM to a pod that is deleted, evicted or past its deadline. The run must not
leave its statement running on the server (docs/adr/0009-the-fence.md), and what it reports must
be what the database kept.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migration_backends import (
    family,
    lockstep,
    migration_backends,
    queued_for_the_lock,
    sleep_sql,
    sleeping,
    tables,
    wait_for,
    write_source,
)

pytestmark = pytest.mark.integration


def test_sigterm_cancels_the_running_statement_and_says_what_the_database_kept(
    db_server_url: str, tmp_path: Path
) -> None:
    url = db_server_url
    source = write_source(
        tmp_path / "sql",
        {
            "V1__base.sql": "CREATE TABLE base (id int);\n",
            "V2__slow.sql": f"CREATE TABLE slow_made (id int);\n{sleep_sql(url, 30)};\n",
        },
    )
    result_file = tmp_path / "result.json"
    run = lockstep(
        url, "run", "--tool", "sql", "--source", str(source), "--result-file", str(result_file)
    )
    try:
        wait_for(lambda: sleeping(url), 30, "the slow statement to run")
        run.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = run.communicate(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
    assert stopped_in < 5, err
    assert run.returncode not in (0, -signal.SIGTERM), err
    assert migration_backends(url) == []  # nothing left running on the server
    report = json.loads(result_file.read_text())
    message = report["message"]
    assert "stopped by SIGTERM" in message
    assert "base" in tables(url)  # V1 was committed before the stop
    if family(url) == "postgresql":
        assert report["reason"] == "Interrupted"
        assert "rolled the whole file back" in message
        assert "slow_made" not in tables(url)  # and it really was
        assert "Fix the file" not in message
    else:
        # MariaDB committed V2's first statement: the stop is reported as a partial file,
        # and the next run must refuse until a person repairs it.
        assert report["reason"] == "PartiallyApplied"
        assert "slow_made" in tables(url)
        assert "rolled" not in message


def test_sigterm_while_waiting_for_the_lock_says_nothing_changed(
    db_server_url: str, tmp_path: Path
) -> None:
    url = db_server_url
    ready = tmp_path / "locked"
    holder = lockstep(url, "lock", "--wait-seconds", "5", "--ready-file", str(ready))
    source = write_source(tmp_path / "sql", {"V1__base.sql": "CREATE TABLE base (id int);\n"})
    result_file = tmp_path / "result.json"
    try:
        wait_for(ready.exists, 20, "the lock holder")
        run = lockstep(
            url,
            "run",
            "--tool",
            "sql",
            "--source",
            str(source),
            "--lock-wait-seconds",
            "60",
            "--result-file",
            str(result_file),
        )
        wait_for(lambda: queued_for_the_lock(url), 30, "the run to queue for the lock")
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=10)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)
    assert result_file.exists(), err
    report = json.loads(result_file.read_text())
    assert report["reason"] == "Interrupted", err
    assert "before it changed anything" in report["message"]
    assert "base" not in tables(url)


@pytest.fixture(params=["postgresql", "mariadb"])
def db_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on both servers Lockstep fences: PostgreSQL and MariaDB."""
    fixture = "pg_url" if request.param == "postgresql" else "mariadb_url"
    yield request.getfixturevalue(fixture)


SLOW_REVISION = '''"""A revision that creates a table, then sleeps."""

import sqlalchemy as sa
from alembic import op

revision = "a1000004"
down_revision = "a1000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("slow_made", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT pg_sleep(30)")


def downgrade() -> None:
    op.drop_table("slow_made")
'''


def test_sigterm_cancels_an_alembic_revision_on_postgresql(
    pg_url: str, fixtures_dir: Path, tmp_path: Path
) -> None:
    """The built-in Alembic runner migrates on the same tagged, watched connection as `sql`."""
    scripts = Path(shutil.copytree(fixtures_dir / "alembic" / "shop", tmp_path / "alembic"))
    (scripts / "versions" / "a1000004_slow.py").write_text(SLOW_REVISION)
    result_file = tmp_path / "result.json"
    run = lockstep(
        pg_url,
        *("run", "--tool", "alembic", "--source", str(scripts)),
        *("--result-file", str(result_file)),
    )
    try:
        wait_for(lambda: sleeping(pg_url), 60, "the slow revision to run")
        run.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = run.communicate(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
    assert stopped_in < 5, err
    assert migration_backends(pg_url) == []
    report = json.loads(result_file.read_text())
    assert report["reason"] == "Interrupted", report
    assert "stopped by SIGTERM" in report["message"]
    assert "slow_made" not in tables(pg_url)
