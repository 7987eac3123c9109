"""Shared fixtures: real databases for the integration tests.

The session starts (or reuses) a private PostgreSQL and MariaDB through
``testbed.databases`` the first time a test asks for one; unit tests never do.
Every test gets its own fresh, empty, uniquely named database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url

from testbed import databases
from testbed.dbservers import host as dbhost

FIXTURES = Path(__file__).parent / "fixtures"
ENGINES = ("postgresql", "mariadb", "sqlite")


def _unique_name() -> str:
    return f"lockstep_test_{uuid.uuid4().hex[:12]}"


def _with_database(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A superuser URL of the private PostgreSQL server."""
    return dbhost.url_for_pods(databases.ensure_postgres())


@pytest.fixture(scope="session")
def mariadb_admin_url() -> str:
    """A URL (no database) of a user with all privileges on the private MariaDB server."""
    return dbhost.url_for_pods(databases.ensure_mariadb())


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    name = _unique_name()
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        # FORCE: a test that failed may have left a connection (or a held lock) behind.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _mariadb_admin(admin_url: str) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    url = make_url(admin_url)
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        autocommit=True,
    )


@pytest.fixture
def mariadb_url(mariadb_admin_url: str) -> Iterator[str]:
    name = _unique_name()
    with _mariadb_admin(mariadb_admin_url) as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    yield _with_database(mariadb_admin_url, name)
    with _mariadb_admin(mariadb_admin_url) as admin, admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lockstep-test.db'}"


@pytest.fixture(params=ENGINES, ids=ENGINES)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each engine in turn; only the engine's server is started."""
    fixture = {"postgresql": "pg_url", "mariadb": "mariadb_url", "sqlite": "sqlite_url"}
    url: str = request.getfixturevalue(fixture[request.param])
    return url


def e2e_mode() -> str:
    """Where this session's e2e pods run, as the header and the summary say it."""
    import os

    if os.environ.get("KUBECONFIG"):
        return f"the cluster of KUBECONFIG={os.environ['KUBECONFIG']} (pods are real containers)"
    if os.environ.get("LOCKSTEP_E2E_NODE") == "kubelet":
        return (
            "real node (LOCKSTEP_E2E_NODE=kubelet): kubelet + containerd, pods are real "
            "containers of the image built by make image"
        )
    return (
        "pod agent, the fast mode: pods are host processes (LOCKSTEP_E2E_NODE=kubelet runs "
        "them as real containers; make test-real-node)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"e2e mode: {e2e_mode()}"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Say where the e2e pods ran (the pod agent or real containers), in which order the tests
    ran (pytest-randomly's seed, printed even under -q) and what the session leaves running for
    the next one, with the command that stops it."""
    from testbed import cluster
    from testbed.dbservers import host

    ran_e2e = any(
        "e2e" in report.keywords
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
    )
    if ran_e2e:
        terminalreporter.write_line(f"e2e tests ran on: {e2e_mode()}")
    seed = config.getoption("randomly_seed", default=None)
    if config.pluginmanager.hasplugin("randomly") and seed is not None:
        terminalreporter.write_line(
            f"tests ran in random order: repeat it with pytest --randomly-seed={seed}"
        )

    left: list[str] = []
    running = cluster.current()
    if running is not None and cluster.is_running():
        node = {
            "kubelet": "real kubelet + containerd (pods are real containers)",
            "agent": "pod agent (pods are host processes)",
        }.get(running.node, running.node)
        left.append(f"control plane {running.server} (state {running.state_dir}), node: {node}")
    database_dir = host.base_dir()
    servers = [s for s in host.SERVERS if (database_dir / s / "data").exists()]
    if servers:
        left.append(f"{' and '.join(servers)} (state {database_dir})")
    if left:
        terminalreporter.write_sep("-", "left running for the next run (reused, not restarted)")
        for line in left:
            terminalreporter.write_line(f"  {line}")
        terminalreporter.write_line("  stop it all: make demo-down")
