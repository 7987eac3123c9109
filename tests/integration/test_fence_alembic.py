"""The fence with Alembic's stock ``env.py``, which opens a connection of its own.

Lockstep's runner opens a tagged migration connection, but the ``env.py`` that ``alembic init``
writes ignores it and connects by itself from ``sqlalchemy.url``. That connection is the one that
runs the revisions, so it is the one the next run's fence must find after the runner is killed:
on PostgreSQL through ``application_name`` in the URL Lockstep hands it, on MySQL/MariaDB by the
run's named lock moving to it as it connects.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import alembic
import pytest

from lockstep.pod import run_request, runner
from migration_backends import (
    backend_alive,
    family,
    lockstep,
    migration_backends,
    sleep_sql,
    tables,
    wait_for,
)

pytestmark = pytest.mark.integration

STOCK_ENV_PY = Path(alembic.__file__).parent / "templates" / "generic" / "env.py"


def _revision(revision: str, down: str | None, body: str) -> str:
    return (
        "from alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{body}\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def db_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url")


def test_a_killed_stock_env_py_run_is_fenced_by_the_next_run(
    db_server_url: str, tmp_path: Path
) -> None:
    url = db_server_url
    scripts = tmp_path / "alembic"
    (scripts / "versions").mkdir(parents=True)
    shutil.copyfile(STOCK_ENV_PY, scripts / "env.py")
    sleeping = (
        f"    op.execute('CREATE TABLE slept (id int)')\n    op.execute({sleep_sql(url, 60)!r})"
    )
    (scripts / "versions" / "0001_sleep.py").write_text(_revision("0001", None, sleeping))

    first = lockstep(url, "run", "--tool", "alembic", "--source", str(scripts))
    try:
        wait_for(
            lambda: any("SLEEP" in query.upper() for _id, query in migration_backends(url)),
            60,
            "the stock env.py's connection, sleeping and findable by the fence",
        )
        (zombie,) = [b for b, query in migration_backends(url) if "SLEEP" in query.upper()]
        first.send_signal(signal.SIGKILL)  # the runner dies; its statement goes on
        first.wait(timeout=10)
        assert backend_alive(url, zombie)

        (scripts / "versions" / "0001_sleep.py").write_text(
            _revision("0001", None, "    op.execute('CREATE TABLE items (id int)')")
        )
        result = runner.run(
            run_request.RunRequest(
                tool="alembic",
                source_dir=scripts,
                database_url=url,
                target="head",
                lock_wait_seconds=10,
                statement_lock_timeout="5s",
            )
        )
    finally:
        if first.poll() is None:
            first.kill()
    assert f"terminated backend {zombie} of an earlier run" in result.extras["fenced"]
    assert not backend_alive(url, zombie)
    assert result.applied == ["0001"]
    assert "items" in tables(url)
    if family(url) == "postgresql":
        assert "slept" not in tables(url)  # its transaction was rolled back with it
