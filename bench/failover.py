"""Failover benchmark: how long a Lockstep cluster goes without an acting operator.

Runs two operator replicas on the e2e test bed (the local control plane of `testbed.cluster`, its
pod agent, the private PostgreSQL of `testbed.databases`), then kills the leader with SIGKILL a
number of times, alternately while idle and in the middle of a migration. For each kill it
measures

* leader: from the kill to the standby's `/metrics` reporting `lockstep_leader 1`;
* status: from the kill to the next status write, on a DatabaseMigration whose spec was changed
  right after the kill (the new leader must notice it and write `observedGeneration`);

and, for kills during a migration, checks that the running Job was adopted (one Job, Ready).
The killed replica is started again as the new standby before the next kill.

    PYTHONPATH=tools:tests/support .venv/bin/python bench/failover.py [--quick] [--kills N]

Default Lease timings are the production defaults (15 s / 10 s / 2 s); `--quick` uses 6 / 4 / 1.
Prints a table and writes JSON to bench/results/failover.json (`--output`). Uses its own Lease
(`lockstep-bench`) and namespace, and refuses to run while another operator holds the e2e
Lease (a test session or `make demo`): that operator would reconcile the bench's objects too.
Set LOCKSTEP_CLUSTER_DIR to run on a control plane of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from benchlib.common import REPO
from benchlib.kube import ensure_namespace
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from sqlalchemy.engine import make_url

from testbed import cluster, databases, kubetest
from testbed.operatorprocess import OperatorProcess
from testbed.podagent import background

T = TypeVar("T")

LEASE_NAMESPACE = "lockstep-system"
BENCH_LEASE = "lockstep-bench"
E2E_LEASE = "lockstep-leader"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "failover.json"
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Timings:
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def args(self) -> tuple[str, ...]:
        return (
            "--lease-duration",
            str(self.lease_duration),
            "--renew-deadline",
            str(self.renew_deadline),
            "--retry-period",
            str(self.retry_period),
        )

    @property
    def bound(self) -> float:
        """The slowest takeover the election allows, API round trips aside.

        The standby counts the lease duration from when *it saw* the last renewal (up to one
        retry period after it happened), then notices the expiry at its next look (up to one
        more): lease duration + 2 x retry period after the kill.
        """
        return self.lease_duration + 2 * self.retry_period


PRODUCTION = Timings(15.0, 10.0, 2.0)
QUICK = Timings(6.0, 4.0, 1.0)


@dataclass(frozen=True)
class Kill:
    number: int
    mode: str  # "idle" or "migration"
    leader_seconds: float
    status_seconds: float
    adopted: bool | None  # migration kills: the running Job finished Ready, and it was the only one


# --------------------------------------------------------------------------- helpers


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    return kubetest.wait_for(what, probe, timeout=timeout, interval=POLL_SECONDS)


def leads(replica: OperatorProcess) -> bool:
    if replica.process is None or replica.process.poll() is not None:
        return False
    try:
        return replica.is_leader()
    except OSError:
        return False


def lease_is_live(api: client.ApiClient, name: str) -> str | None:
    """The holder of Lease `name` if it renewed within its duration (plus slack), else None."""
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, LEASE_NAMESPACE)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    spec = lease.spec
    if not spec or not spec.holder_identity or spec.renew_time is None:
        return None
    age = (datetime.now(UTC) - spec.renew_time).total_seconds()
    return spec.holder_identity if age < (spec.lease_duration_seconds or 15) + 5 else None


def pg_execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql)


def migrating_now(url: str) -> bool:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE '%%pg_sleep%%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return bool(row and row[0])


def with_search_path(url: str, schema: str) -> str:
    """The same database (same lock, same Job label), the tables in a schema of their own."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


# --------------------------------------------------------------------------- test bed


@dataclass
class Bed:
    api: client.ApiClient
    kubeconfig: Path
    namespace: str
    database_url: str


@contextmanager
def test_bed() -> Iterator[Bed]:
    """The e2e control plane and pod agent, a namespace and a fresh database; removed after."""
    running = cluster.up()
    agent = background.start_background(running.kubeconfig, running.state_dir / "podagent")
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(running.kubeconfig)
    )
    admin_url = databases.ensure_postgres()
    database = f"lockstep_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"lockstep-bench-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    try:
        kubetest.apply_crds(api)
        for name in (LEASE_NAMESPACE, namespace):
            ensure_namespace(api, name)
        holder = lease_is_live(api, E2E_LEASE)
        if holder:
            raise SystemExit(
                f"another operator ({holder}) holds Lease {LEASE_NAMESPACE}/{E2E_LEASE} and "
                "would reconcile the bench's objects too: stop it (`make demo-down`, or let the "
                "test session end) or set LOCKSTEP_CLUSTER_DIR to use a control plane of its own"
            )
        pg_execute(admin_url, f'CREATE DATABASE "{database}"')
        url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
        kubetest.create_secret(api, namespace, "db", {"url": url})
        yield Bed(api, running.kubeconfig, namespace, url)
    finally:
        try:
            core.delete_namespace(namespace)
        except ApiException as error:
            if error.status != 404:
                print(f"could not delete namespace {namespace}: {error.reason}", file=sys.stderr)
        # The namespace's pods go first: they hold connections to the database.
        time.sleep(2)
        pg_execute(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        agent.stop()


class Pair:
    """Two replicas on the bench's Lease, watching only the bench's namespace."""

    def __init__(self, bed: Bed, timings: Timings, log_dir: Path) -> None:
        args = (
            "--lease-name",
            BENCH_LEASE,
            "--namespace",
            bed.namespace,
            "--webhook-port",
            "0",  # no gate webhook: the bench needs none, and off-cluster each replica
            # would point the shared webhook configuration at its own URL
            *timings.args(),
        )
        self.replicas = [
            OperatorProcess(bed.kubeconfig, log_dir, LEASE_NAMESPACE, f"replica-{i}", args)
            for i in range(2)
        ]
        self.timings = timings

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def leader(self) -> OperatorProcess:
        def single() -> OperatorProcess | None:
            found = [r for r in self.replicas if leads(r)]
            return found[0] if len(found) == 1 else None

        return wait_for("exactly one leader", single, timeout=self.timings.lease_duration * 4)


# --------------------------------------------------------------------------- the benchmark


def run(bed: Bed, pair: Pair, kills: int, log: Callable[[str], None]) -> list[Kill]:
    api, namespace = bed.api, bed.namespace
    kubetest.create_config_map(api, namespace, "none", {"V1__none.sql": "SELECT 1;"})
    probe = kubetest.sql_migration("probe", "none", suspend=True)
    kubetest.create_migration(api, namespace, probe)
    pair.start()
    pair.leader()
    kubetest.wait_for_condition(api, namespace, "probe", "Ready", "False", reason="Suspended")
    # Long enough to still run when the standby takes over.
    sleep = int(pair.timings.bound + 10)
    results = []
    for number in range(1, kills + 1):
        mode = "idle" if number % 2 else "migration"
        migration = f"slow-{number}"
        if mode == "migration":
            # Each migration keeps its own history table, in a schema of its own.
            schema = migration.replace("-", "_")
            pg_execute(bed.database_url, f"CREATE SCHEMA {schema}")
            url = with_search_path(bed.database_url, schema)
            kubetest.create_secret(api, namespace, migration, {"url": url})
            files = {"V1__slow.sql": f"SELECT pg_sleep({sleep});\nCREATE TABLE t (i int);"}
            kubetest.create_config_map(api, namespace, migration, files)
            spec = kubetest.sql_migration(migration, migration, url_from=migration)
            kubetest.create_migration(api, namespace, spec)
            kubetest.wait_for_condition(
                api, namespace, migration, "Reconciling", reason="JobRunning"
            )
            wait_for("the migration in pg_sleep", lambda: migrating_now(bed.database_url), 60)
        leader = pair.leader()
        (standby,) = [r for r in pair.replicas if r is not leader]
        result = kill_and_measure(bed, leader, standby, number, mode)
        adopted = None
        if mode == "migration":
            body = kubetest.wait_for_condition(
                api, namespace, migration, "Ready", reason="Succeeded", timeout=sleep + 120
            )
            job_count = len(kubetest.jobs_of(api, namespace, migration))
            adopted = job_count == 1 and len(body["status"]["history"]) == 1
        results.append(Kill(number, mode, *result, adopted))
        log(
            f"kill {number} ({mode}): leader after {result[0]:.2f}s, status after "
            f"{result[1]:.2f}s" + ("" if adopted is None else f", adopted: {adopted}")
        )
        leader.start()  # back as the standby, as the kubelet would restart it
        time.sleep(pair.timings.retry_period * 2)  # let it see the Lease before the next kill
    return results


def kill_and_measure(
    bed: Bed, leader: OperatorProcess, standby: OperatorProcess, number: int, mode: str
) -> tuple[float, float]:
    api, namespace = bed.api, bed.namespace
    killed_at = time.monotonic()
    leader.kill()
    # A change nobody acts on until a leader does: the next status write says it was seen.
    patched = kubetest.patch_migration(
        api, namespace, "probe", {"spec": {"timeouts": {"jobSeconds": 3600 + number}}}
    )
    generation = patched["metadata"]["generation"]
    led_at: float | None = None
    status_at: float | None = None
    deadline = killed_at + 120
    while (led_at is None or status_at is None) and time.monotonic() < deadline:
        if led_at is None and leads(standby):
            led_at = time.monotonic()
        if status_at is None:
            body = kubetest.get_migration(api, namespace, "probe")
            if (body.get("status") or {}).get("observedGeneration") == generation:
                status_at = time.monotonic()
        time.sleep(POLL_SECONDS)
    if led_at is None or status_at is None:
        raise RuntimeError(f"kill {number} ({mode}): no takeover within 120s:\n{standby.log()}")
    return round(led_at - killed_at, 3), round(status_at - killed_at, 3)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "worst": round(max(values), 3),
        "best": round(min(values), 3),
    }


def report(kills: list[Kill], timings: Timings) -> dict[str, Any]:
    leader = [k.leader_seconds for k in kills]
    status = [k.status_seconds for k in kills]
    return {
        "timings": asdict(timings),
        "bound_seconds": timings.bound,
        "kills": [asdict(k) for k in kills],
        "leader_seconds": summary(leader),
        "status_seconds": summary(status),
        "within_bound": all(k.leader_seconds <= timings.bound for k in kills),
        "all_adopted": all(k.adopted for k in kills if k.adopted is not None),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def table(kills: list[Kill], result: dict[str, Any]) -> str:
    lines = [f"{'kill':>4}  {'mode':<9}  {'leader s':>8}  {'status s':>8}  adopted"]
    for k in kills:
        adopted = "-" if k.adopted is None else ("yes" if k.adopted else "NO")
        lines.append(
            f"{k.number:>4}  {k.mode:<9}  {k.leader_seconds:>8.2f}  {k.status_seconds:>8.2f}  "
            f"{adopted}"
        )
    for name in ("median", "worst"):
        leader, status = result["leader_seconds"][name], result["status_seconds"][name]
        lines.append(f"{name:>15}  {leader:>8.2f}  {status:>8.2f}")
    timings = result["timings"]
    lines.append(
        f"lease {timings['lease_duration']:g}s / renew {timings['renew_deadline']:g}s / "
        f"retry {timings['retry_period']:g}s: takeover bound {result['bound_seconds']:g}s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6, help="leader kills (at least 5)")
    parser.add_argument("--quick", action="store_true", help="short Lease timings: 6s/4s/1s")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    args = parser.parse_args(argv)
    if args.kills < 5:
        parser.error("--kills must be at least 5 (median and worst need a few samples)")
    timings = QUICK if args.quick else PRODUCTION

    def log(message: str) -> None:
        print(f"[failover] {message}", file=sys.stderr, flush=True)

    log_dir = Path(tempfile.mkdtemp(prefix="lockstep-failover-"))
    log(f"replica logs in {log_dir}")
    with test_bed() as bed:
        pair = Pair(bed, timings, log_dir)
        try:
            kills = run(bed, pair, args.kills, log)
        finally:
            pair.stop()
    result = report(kills, timings)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(table(kills, result))
    log(f"wrote {args.output}")
    return 0 if result["within_bound"] and result["all_adopted"] else 1


if __name__ == "__main__":
    sys.exit(main())
