"""The built-in runner with Alembic scripts, on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockstep import database, errors, version_tables
from lockstep.pod import lock, runner
from lockstep.pod.run_request import RunRequest, RunResult

pytestmark = pytest.mark.integration

REVISIONS = ["a1000001", "a1000002", "a1000003"]
BROKEN_REVISION = '''"""A revision that fails half-way."""

import sqlalchemy as sa
from alembic import op

revision = "a1000004"
down_revision = "a1000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO no_such_table (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("half_done")
'''


@pytest.fixture
def scripts(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop's Alembic scripts that a test may edit."""
    return Path(shutil.copytree(fixtures_dir / "alembic" / "shop", tmp_path / "alembic"))


def run(url: str, source: Path, target: str = "head", **options: Any) -> RunResult:
    settings: dict[str, Any] = {"lock_wait_seconds": 10.0, "statement_lock_timeout": "5s"}
    settings.update(options)
    return runner.run(
        RunRequest(tool="alembic", source_dir=source, database_url=url, target=target, **settings)
    )


def inspect(url: str) -> tuple[set[str], set[str], str | None]:
    """Tables, the columns of customers (if any), and the revision Alembic recorded."""
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            names = set(inspector.get_table_names())
            customer_columns = (
                {c["name"] for c in inspector.get_columns("customers")}
                if "customers" in names
                else set()
            )
            revision = version_tables.read_applied_revision("alembic", connection)
            return names, customer_columns, revision
    finally:
        engine.dispose()


def test_upgrade_to_head(db_url: str, scripts: Path) -> None:
    result = run(db_url, scripts)
    assert (result.tool, result.direction) == ("alembic", "up")
    assert (result.from_revision, result.to_revision) == (None, "a1000003")
    assert result.applied == REVISIONS
    names, customer_columns, revision = inspect(db_url)
    assert names == {"alembic_version", "customers", "orders"}
    assert customer_columns == {"id", "name", "email"}
    assert revision == "a1000003"


def test_rerun_at_head_does_nothing(db_url: str, scripts: Path) -> None:
    run(db_url, scripts)
    again = run(db_url, scripts)
    assert (again.direction, again.from_revision, again.to_revision) == (
        "none",
        "a1000003",
        "a1000003",
    )
    assert again.applied == []


def test_upgrade_step_by_step(db_url: str, scripts: Path) -> None:
    assert run(db_url, scripts, target="a1000001").applied == ["a1000001"]
    second = run(db_url, scripts, target="head")
    assert (second.from_revision, second.applied) == ("a1000001", ["a1000002", "a1000003"])


def test_downgrade_to_a_revision(db_url: str, scripts: Path) -> None:
    run(db_url, scripts)
    result = run(db_url, scripts, target="a1000001", allow_downgrade=True)
    assert (result.direction, result.from_revision, result.to_revision) == (
        "down",
        "a1000003",
        "a1000001",
    )
    assert result.applied == ["a1000003", "a1000002"]
    names, customer_columns, revision = inspect(db_url)
    assert names == {"alembic_version", "customers"}
    assert customer_columns == {"id", "name"}
    assert revision == "a1000001"


def test_downgrade_to_base(db_url: str, scripts: Path) -> None:
    run(db_url, scripts)
    result = run(db_url, scripts, target="base", allow_downgrade=True)
    assert (result.direction, result.to_revision) == ("down", None)
    assert result.applied == list(reversed(REVISIONS))
    names, _, revision = inspect(db_url)
    assert names == {"alembic_version"}
    assert revision is None


def test_downgrade_forbidden(db_url: str, scripts: Path) -> None:
    run(db_url, scripts)
    with pytest.raises(errors.DowngradeForbidden) as caught:
        run(db_url, scripts, target="a1000001")
    assert "would undo a1000003, a1000002" in str(caught.value)
    assert inspect(db_url)[2] == "a1000003"


def test_unknown_target_lists_revisions(sqlite_url: str, scripts: Path) -> None:
    with pytest.raises(errors.InvalidTarget) as caught:
        run(sqlite_url, scripts, target="ffff")
    assert "known revisions (newest first): a1000003, a1000002, a1000001" in str(caught.value)


def test_not_an_alembic_directory(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSource, match=r"env\.py is missing"):
        run(sqlite_url, tmp_path)


def test_database_ahead_of_the_scripts(sqlite_url: str, scripts: Path) -> None:
    run(sqlite_url, scripts)
    (scripts / "versions" / "a1000003_customer_email.py").unlink()
    with pytest.raises(errors.InvalidSource, match="revision a1000003, which is not in"):
        run(sqlite_url, scripts)


@pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
def test_failed_revision_is_rolled_back(db_url: str, scripts: Path) -> None:
    run(db_url, scripts)
    (scripts / "versions" / "a1000004_broken.py").write_text(BROKEN_REVISION)
    with pytest.raises(errors.MigrationFailed) as caught:
        run(db_url, scripts)
    assert "no_such_table" in str(caught.value)
    assert "stays at revision a1000003" in str(caught.value)
    names, _, revision = inspect(db_url)
    assert "half_done" not in names
    assert revision == "a1000003"


def test_failed_revision_on_mariadb_warns_about_ddl(mariadb_url: str, scripts: Path) -> None:
    run(mariadb_url, scripts)
    (scripts / "versions" / "a1000004_broken.py").write_text(BROKEN_REVISION)
    with pytest.raises(errors.MigrationFailed, match="cannot roll back DDL"):
        run(mariadb_url, scripts)
    assert inspect(mariadb_url)[2] == "a1000003"


def test_waits_for_the_lock_like_sql(db_url: str, scripts: Path) -> None:
    identity = database.identity_from_url(db_url)
    engine = database.make_engine(db_url)
    with (
        engine.connect() as other,
        lock.hold_advisory_lock(other, identity, 0),
        pytest.raises(lock.LockTimeout),
    ):
        run(db_url, scripts, lock_wait_seconds=0.2)
    engine.dispose()
    assert inspect(db_url)[2] is None
    assert run(db_url, scripts).applied == REVISIONS


def test_runs_on_lockstep_s_connection_with_its_lock_timeout(pg_url: str, scripts: Path) -> None:
    """env.py uses the connection Lockstep passes, so statement_lock_timeout applies."""
    run(pg_url, scripts)
    (scripts / "versions" / "a1000004_phone.py").write_text(
        BROKEN_REVISION.replace(
            'op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
            '    op.execute("INSERT INTO no_such_table (id) VALUES (1)")',
            'op.add_column("customers", sa.Column("phone", sa.String(40)))',
        )
    )
    engine = database.make_engine(pg_url)
    with engine.connect() as application:
        application.exec_driver_sql("SELECT * FROM customers")  # holds a lock until rollback
        started = time.monotonic()
        with pytest.raises(errors.MigrationFailed) as caught:
            run(pg_url, scripts, statement_lock_timeout="300ms")
        assert time.monotonic() - started < 5
        application.rollback()
    engine.dispose()
    assert "lock timeout" in str(caught.value)
    assert inspect(pg_url)[2] == "a1000003"


def test_flat_script_directory_from_a_config_map(
    db_url: str, scripts: Path, tmp_path: Path
) -> None:
    """A ConfigMap mount is flat (keys cannot hold '/'): env.py and revisions side by side."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in [*scripts.glob("*.*"), *(scripts / "versions").glob("*.py")]:
        shutil.copyfile(path, flat / path.name)
    result = run(db_url, flat)
    assert result.applied == REVISIONS
    assert inspect(db_url)[2] == "a1000003"
    assert run(db_url, flat, target="a1000001", allow_downgrade=True).direction == "down"


def test_the_env_py_that_alembic_init_writes_works_unmodified(db_url: str, scripts: Path) -> None:
    """Today: KeyError: 'url' (the stock env.py reads sqlalchemy.url, which Lockstep never set)."""
    import alembic

    stock = Path(alembic.__file__).parent / "templates" / "generic" / "env.py"
    shutil.copyfile(stock, scripts / "env.py")
    result = run(db_url, scripts)
    assert result.applied == REVISIONS
    assert inspect(db_url)[2] == REVISIONS[-1]


def test_stock_env_py_with_a_percent_encoded_password(pg_url: str, scripts: Path) -> None:
    """configparser would read '%40' as an interpolation: the URL must reach the driver intact."""
    import alembic
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS lockstep_pct")
        admin.execute("CREATE ROLE lockstep_pct LOGIN SUPERUSER PASSWORD 'p@ss%word'")
    user_url = url.set(username="lockstep_pct", password="p@ss%word").render_as_string(
        hide_password=False
    )
    stock = Path(alembic.__file__).parent / "templates" / "generic" / "env.py"
    shutil.copyfile(stock, scripts / "env.py")
    try:
        assert run(user_url, scripts).applied == REVISIONS
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'REASSIGN OWNED BY lockstep_pct TO "{url.username}"')
            admin.execute("DROP OWNED BY lockstep_pct")
            admin.execute("DROP ROLE lockstep_pct")


SLEEPING_REVISION = '''"""A revision that sleeps, so that its connection can be killed under it."""

from alembic import op

revision = "a1000004"
down_revision = "a1000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE before_sleep (id INTEGER)")
    op.execute("SELECT pg_sleep(30)")


def downgrade() -> None:
    op.execute("DROP TABLE before_sleep")
'''


def test_a_lost_connection_is_not_reported_as_a_failed_revision(pg_url: str, scripts: Path) -> None:
    """Today: MigrationFailed, which tells the person to fix a revision that is fine."""
    import threading

    run(pg_url, scripts)
    versions = scripts / "versions" if (scripts / "versions").is_dir() else scripts
    (versions / "a1000004_sleep.py").write_text(SLEEPING_REVISION)
    outcome: list[BaseException] = []

    def migrate() -> None:
        try:
            run(pg_url, scripts)
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            outcome.append(error)

    thread = threading.Thread(target=migrate)
    thread.start()
    engine = database.make_engine(pg_url)
    try:
        deadline = time.monotonic() + 20
        killed = False
        while not killed and time.monotonic() < deadline:
            time.sleep(0.1)
            with engine.connect() as connection:
                killed = bool(
                    connection.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND starts_with(query, 'SELECT pg_sleep(30)')"
                    ).all()
                )
    finally:
        engine.dispose()
    thread.join(30)
    assert killed
    assert len(outcome) == 1
    assert isinstance(outcome[0], errors.DatabaseUnavailable), outcome[0]
    assert "was lost while Alembic migrated" in str(outcome[0])
    assert inspect(pg_url)[2] == REVISIONS[-1]
    assert "before_sleep" not in inspect(pg_url)[0]
