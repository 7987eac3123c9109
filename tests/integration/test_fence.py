"""The fence on real servers: a killed run's backend never migrates beside the next run.

Each test plays one way a migration pod dies (docs/adr/0009-the-fence.md) and checks, on the
server itself (pg_stat_activity, pg_locks, IS_USED_LOCK), that two migration backends never work
on one database at once. SIGTERM to `lockstep run` is in test_graceful_stop.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockstep import database
from lockstep.pod import fence, graceful_stop, pg_run, run_request, run_session, runner
from migration_backends import (
    LockWatch,
    Zombie,
    admin_engine,
    backend_alive,
    family,
    lockstep,
    request_for,
    sleep_sql,
    tables,
    wait_for,
    write_source,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- the fence of a new run


def run_through(
    path: str, request: run_request.RunRequest, monkeypatch: pytest.MonkeyPatch
) -> run_request.RunResult:
    """``full``: runner.run (SQLAlchemy, pod.fence). ``fast``: pg_run as `lockstep run` runs
    PostgreSQL (psycopg, pg_direct's fence), never falling back to runner.run, so that the fast
    path's own fence is what ran."""
    if path == "full":
        return runner.run(request)

    def no_fallback(*_: object) -> None:
        pytest.fail("the run left the fast path")

    monkeypatch.setattr(runner, "run", no_fallback)
    return pg_run.run(request, (), graceful_stop.GracefulStop())


@pytest.mark.parametrize(
    ("server", "path"), [("postgresql", "full"), ("mariadb", "full"), ("postgresql", "fast")]
)
def test_a_new_run_ends_an_earlier_runs_backend_before_it_migrates(
    server: str,
    path: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url: str = request.getfixturevalue("pg_url" if server == "postgresql" else "mariadb_url")
    zombie = Zombie(url, ["CREATE TABLE zombie_made (id int)", sleep_sql(url, 30)]).start()
    source = write_source(tmp_path / "sql", {"V1__items.sql": "CREATE TABLE items (id int);\n"})
    started = time.monotonic()
    result = run_through(path, request_for(url, source), monkeypatch)
    assert time.monotonic() - started < 10
    assert result.applied == ["1"]
    assert zombie.ended.wait(5)
    assert not backend_alive(url, zombie.backend_id)
    fenced = result.extras["fenced"]
    assert f"terminated backend {zombie.backend_id} of an earlier run" in fenced
    assert "SLEEP(30)" in fenced.upper()
    assert "items" in tables(url)
    if family(url) == "postgresql":
        # Its transaction was open: the server rolled it back.
        assert "zombie_made" not in tables(url)


# What the migrating backend and the backend holding the migration lock call themselves.
_SEEN = (
    "CREATE TABLE seen AS SELECT current_setting('application_name') AS migrating, "
    "(SELECT string_agg(a.application_name, ',') FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted) AS holding;\n"
)


@pytest.mark.parametrize("path", ["full", "fast"])
def test_a_run_tags_its_migration_connection_and_not_its_lock_connection(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The fence ends tagged backends: the migration connection must carry the tag (a startup
    parameter), the lock's connection of the same run must not."""
    source = write_source(tmp_path / "sql", {"V1__seen.sql": _SEEN})
    assert run_through(path, request_for(pg_url, source), monkeypatch).applied == ["1"]
    engine = admin_engine(pg_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT migrating, holding FROM seen")).one()
    finally:
        engine.dispose()
    assert tuple(row) == (fence.MIGRATION_APPLICATION_NAME, "lockstep")


def test_a_run_that_lost_its_lock_holder_and_the_run_that_took_over_never_both_migrate(
    db_server_url: str,
) -> None:
    """The fence ran and found nothing; then the old run (its sidecar died, its pod lives) opens
    its migration connection. Whichever of the two opens its tagged connection second stops."""
    url = db_server_url
    identity = database.identity_from_url(url)
    old_run = Zombie(url, [sleep_sql(url, 30)]).start()  # tagged, migrating
    engine = database.make_engine(url)
    try:
        with (
            pytest.raises(fence.FenceFailed) as caught,
            run_session.migration_connection(engine, identity, url),
        ):
            pytest.fail("a second migration connection was opened beside a running one")
    finally:
        engine.dispose()
    assert str(old_run.backend_id) in str(caught.value)
    assert backend_alive(url, old_run.backend_id)  # refused, not fenced: it held no lock here
    admin = admin_engine(url)
    with admin.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        kill = "SELECT pg_terminate_backend({})" if family(url) == "postgresql" else "KILL {}"
        connection.exec_driver_sql(kill.format(old_run.backend_id))
    admin.dispose()
    assert old_run.ended.wait(5)


@pytest.mark.parametrize("path", ["full", "fast"])
def test_the_fence_says_which_privilege_is_missing(
    pg_url: str, postgres_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """A backend of another role cannot be ended without pg_signal_backend: refuse, and say so."""
    role = "fence_" + os.urandom(4).hex()
    admin = admin_engine(pg_url)
    with admin.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        connection.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {role}")
        name = database.identity_from_url(pg_url).database
        connection.exec_driver_sql(f'GRANT ALL ON DATABASE "{name}" TO {role}')
    role_url = (
        sa.engine.make_url(pg_url)
        .set(username=role, password=f"pw-{role}")
        .render_as_string(hide_password=False)
    )
    zombie = Zombie(pg_url, [sleep_sql(pg_url, 30)]).start()  # the superuser's backend
    source = write_source(tmp_path / "sql", {"V1__items.sql": "CREATE TABLE items (id int);\n"})
    try:
        with pytest.raises(fence.FenceFailed) as caught:
            run_through(path, request_for(role_url, source), monkeypatch)
        message = str(caught.value)
        assert f"backend {zombie.backend_id} of an earlier run" in message
        assert f"role '{role}' may not end it" in message
        assert f'GRANT pg_signal_backend TO "{role}"' in message
        assert f"pw-{role}" not in message
        assert "items" not in tables(pg_url)
        assert backend_alive(pg_url, zombie.backend_id)
    finally:
        with admin.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({zombie.backend_id})")
            zombie.ended.wait(5)
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_the_lock_holder_releases_only_after_its_runs_backend_is_gone(
    db_server_url: str, tmp_path: Path
) -> None:
    url = db_server_url
    ready = tmp_path / "locked"
    holder = lockstep(url, "lock", "--wait-seconds", "5", "--ready-file", str(ready))
    try:
        wait_for(ready.exists, 20, "the lock holder")
        run_backend = Zombie(url, [sleep_sql(url, 30)]).start()  # the pod's run, mid-statement
        with LockWatch(url, run_backend.backend_id) as watch:
            time.sleep(0.3)
            holder.send_signal(signal.SIGTERM)
            out, _err = holder.communicate(timeout=30)
            time.sleep(0.3)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 0, out
    assert run_backend.ended.wait(5)
    assert (True, True) in watch.samples  # the watch saw the run working under the lock
    overlap = [sample for sample in watch.samples if sample == (False, True)]
    assert overlap == [], "the lock was free while the run's backend was still working"
    assert watch.samples[-1] == (False, False)
    assert f"terminated backend {run_backend.backend_id}" in out


@pytest.fixture(params=["postgresql", "mariadb"])
def db_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on both servers Lockstep fences: PostgreSQL and MariaDB."""
    fixture = "pg_url" if request.param == "postgresql" else "mariadb_url"
    yield request.getfixturevalue(fixture)
