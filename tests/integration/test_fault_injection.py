"""Fault injection (issue 16): kill a migration pod's processes mid-file; the rerun must never
overlap the killed run, and every status must tell the truth about the database.

Each trial starts the lock sidecar (`lockstep lock`) and, once it holds the lock, the migrate
process (`lockstep run --no-lock`, or the Knex CLI with PGAPPNAME=lockstep-migration as a Job
sets it), kills the runner, the sidecar or both (SIGKILL or SIGTERM) at a random point of files
that sleep on the server, and starts the next run at once. A monitor polls the server's sessions
(aiming at 40 Hz, asserted >= MIN_POLL_HZ on average) and records every moment two runs
execute migration statements on one database; a positive control shows it sees two unlocked clients.

LOCKSTEP_FAULT_KILLS sets the kills per engine for SQL files (default 100); Alembic (PostgreSQL,
MariaDB) and Knex (PostgreSQL) get LOCKSTEP_FAULT_TOOL_KILLS each (default 20).
LOCKSTEP_FAULT_LANES databases per campaign run side by side (default 5); LOCKSTEP_FAULT_SEED
repeats a campaign's random choices. The figures go to a JSON file in the test's tmp dir; its
path and a table are printed at the end (run with -s to see them).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolchains
from faultinject import campaign, monitor, trials, workloads

pytestmark = pytest.mark.integration

SQL_KILLS = int(os.environ.get("LOCKSTEP_FAULT_KILLS", "100"))
TOOL_KILLS = int(os.environ.get("LOCKSTEP_FAULT_TOOL_KILLS", "20"))
LANES = int(os.environ.get("LOCKSTEP_FAULT_LANES", "5"))
SEED = int(os.environ.get("LOCKSTEP_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))

Result = tuple[trials.Tally, monitor.SessionMonitor]


# The monitor must poll at least twice within the shortest server-side sleep of a run's step
# (0.2 s, faultinject.workloads): a mean gap of 100 ms. It aims at 40 Hz; 20 Hz was asserted
# before, but on 2 cores the MariaDB campaign's own load held PROCESSLIST polling at 13-19 Hz
# (7 December 2026) with every run still seen.
MIN_POLL_HZ = 10


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Result]]:
    """Every campaign's figures; printed as one table (and written as JSON) at the end."""
    collected: list[Result] = []
    yield collected
    if not collected:
        return
    path = tmp_path_factory.mktemp("fault-figures") / "fault-injection.json"
    campaign.write_figures(
        path, collected, code=os.environ.get("LOCKSTEP_FAULT_CODE", "working tree")
    )
    print(f"\nfault injection (seed {SEED}):\n{campaign.summary(collected)}\nfigures: {path}")


def _campaign(
    workload: workloads.Workload, admin_url: str, kills: int, tmp_path: Path, results: list[Result]
) -> None:
    tally, watcher = campaign.run(workload, admin_url, kills, LANES, tmp_path, SEED)
    results.append((tally, watcher))
    detail = "\n".join(tally.notes[:40])
    print(f"\n{campaign.summary([(tally, watcher)])}\n{detail}")
    assert watcher.error is None, f"the session monitor failed: {watcher.error!r}"
    assert watcher.stats.rate() >= MIN_POLL_HZ, (
        f"the monitor polled at {watcher.stats.rate():.1f} Hz only"
    )
    assert tally.kills >= kills, f"only {tally.kills} of {kills} signals hit a live run"
    assert (tally.overlaps, tally.disagreements) == (0, 0), (
        f"{workload.name}: {tally.overlaps} overlapping runs, {tally.disagreements} statuses that "
        f"disagree with the database (seed {SEED}):\n{detail}"
    )


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_the_monitor_sees_two_unlocked_clients_at_once(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The positive control: two clients that Lockstep neither locks nor fences sleep on one
    database at once, and the monitor records it (so its 0 in the campaigns below is a
    measurement, not blindness)."""
    admin_url = request.getfixturevalue(
        f"{'postgres' if engine == 'postgresql' else engine}_admin_url"
    )
    family = "postgresql" if engine == "postgresql" else "mysql"
    watcher = campaign.unlocked_pair(workloads.Workload("plain", family), admin_url, tmp_path)
    assert watcher.error is None
    assert len(watcher.overlaps) == 1, "two unlocked runs of sleeping files were not seen at once"
    (overlap,) = watcher.overlaps.values()
    assert len(overlap.runs) == 2 and overlap.samples >= 2


def test_sql_files_on_postgresql(
    postgres_admin_url: str, tmp_path: Path, results: list[Result]
) -> None:
    _campaign(
        workloads.Workload("sql", "postgresql"), postgres_admin_url, SQL_KILLS, tmp_path, results
    )


def test_sql_files_on_mariadb(
    mariadb_admin_url: str, tmp_path: Path, results: list[Result]
) -> None:
    _campaign(workloads.Workload("sql", "mysql"), mariadb_admin_url, SQL_KILLS, tmp_path, results)


def test_alembic_on_postgresql(
    postgres_admin_url: str, tmp_path: Path, results: list[Result]
) -> None:
    workload = workloads.Workload("alembic", "postgresql")
    _campaign(workload, postgres_admin_url, TOOL_KILLS, tmp_path, results)


def test_alembic_on_mariadb(mariadb_admin_url: str, tmp_path: Path, results: list[Result]) -> None:
    workload = workloads.Workload("alembic", "mysql")
    _campaign(workload, mariadb_admin_url, TOOL_KILLS, tmp_path, results)


def test_knex_on_postgresql(postgres_admin_url: str, tmp_path: Path, results: list[Result]) -> None:
    node_home = toolchains.install("node", echo=False) / "node"
    workload = workloads.Workload("knex", "postgresql", node_home=node_home)
    _campaign(workload, postgres_admin_url, TOOL_KILLS, tmp_path, results)
