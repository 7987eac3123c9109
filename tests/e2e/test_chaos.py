"""Chaos: never two migrations of one database at once, never zero operators for long.

The promise of issue 5, checked the hard way: operator replicas killed with SIGKILL, twenty
migrations racing for three databases, a Job made by hand, the kube-apiserver restarted and
PostgreSQL stopped while a migration runs. Overlap and "exactly once" are judged from the
database's own clock (`clock_timestamp()` rows written inside each migration's transaction),
not from the operator's word.

Replicas run with short Lease timings (6 s / 4 s / 1 s) so a takeover fits a test. The session
`operator` holds the same Lease (`lockstep-system/lockstep-leader`): tests that run replicas stop
it first and start it again afterwards, so that exactly one operator reconciles at any moment.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from sqlalchemy.engine import make_url

from lockstep import constants
from lockstep.controller import cluster_facts
from lockstep.tools.version_table import sql_history_name
from testbed import kubetest
from testbed.kubetest import sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


def runner_image() -> str:
    """The image the operator's Jobs run (set by the session on the registry-less real node)."""
    return os.environ.get("LOCKSTEP_RUNNER_IMAGE") or constants.DEFAULT_RUNNER_IMAGE


LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6.0, 4.0, 1.0
SHORT_LEASE = (
    "--lease-duration",
    str(LEASE_DURATION),
    "--renew-deadline",
    str(RENEW_DEADLINE),
    "--retry-period",
    str(RETRY_PERIOD),
)
# No gate webhook on the replicas (no test here needs it): off-cluster, each would register its
# own URL in the shared webhook configuration and leave it pointing at a stopped process.
REPLICA_ARGS = (*SHORT_LEASE, "--webhook-port", "0")
# A standby counts the lease duration from when it saw the last renewal (up to a retry period
# late) and notices the expiry at its next look (up to one more): lease duration + 2 retry
# periods. The slack covers API round trips on a busy two-core test machine.
TAKEOVER_SLACK = 2.0
TAKEOVER_BOUND = LEASE_DURATION + 2 * RETRY_PERIOD + TAKEOVER_SLACK
LOG_TABLE = "public.chaos_log"


# --------------------------------------------------------------------------- databases


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect(url) as connection:
        return list(connection.execute(sql, params).fetchall())


def scalar(url: str, sql: str, *params: Any) -> Any:
    rows = query(url, sql, *params)
    return rows[0][0] if rows else None


def with_search_path(url: str, schema: str) -> str:
    """The same database (same lock key, same Job label), its tables in a schema of its own."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def with_database(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def prepare_log(url: str, *schemas: str) -> None:
    """The table each migration writes its start and end to, from inside its transaction."""
    with connect(url) as connection:
        connection.execute(
            f"CREATE TABLE {LOG_TABLE} (migration text NOT NULL, event text NOT NULL, "
            "at timestamptz NOT NULL)"
        )
        for schema in schemas:
            connection.execute(f'CREATE SCHEMA "{schema}"')


def logged_migration(name: str, body: str = "") -> str:
    """SQL that records its start and end time (the database's clock) around `body`."""
    return (
        f"INSERT INTO {LOG_TABLE} VALUES ('{name}', 'start', clock_timestamp());\n"
        f"{body}\n"
        f"INSERT INTO {LOG_TABLE} VALUES ('{name}', 'end', clock_timestamp());\n"
    )


@dataclass(frozen=True)
class Interval:
    migration: str
    start: datetime
    end: datetime


def intervals(url: str) -> list[Interval]:
    """One interval per logged migration (asserting each logged exactly one start and end)."""
    rows = query(url, f"SELECT migration, event, at FROM {LOG_TABLE} ORDER BY at")
    events: dict[str, dict[str, list[datetime]]] = {}
    for migration, event, at in rows:
        events.setdefault(migration, {}).setdefault(event, []).append(at)
    result = []
    for migration, seen in events.items():
        assert len(seen.get("start", [])) == 1, f"{migration} started {seen} (applied twice?)"
        assert len(seen.get("end", [])) == 1, f"{migration} ended {seen} (applied twice?)"
        result.append(Interval(migration, seen["start"][0], seen["end"][0]))
    return sorted(result, key=lambda i: i.start)


def overlaps(found: Sequence[Interval]) -> list[str]:
    ordered = sorted(found, key=lambda i: i.start)
    return [
        f"{a.migration} [{a.start.time()}-{a.end.time()}] overlaps "
        f"{b.migration} [{b.start.time()}-{b.end.time()}]"
        for a, b in itertools.pairwise(ordered)
        if b.start < a.end
    ]


def migrating_now(url: str) -> bool:
    """A session of this database is inside a migration's pg_sleep right now."""
    found = scalar(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'active' AND query LIKE '%%pg_sleep%%' AND pid <> pg_backend_pid()",
    )
    return bool(found)


def advisory_waiters(url: str) -> int:
    """Sessions of this database queued for an advisory lock (the migration lock)."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
        )
    )


def history_rows(url: str, namespace: str, config_map: str | None) -> list[tuple[Any, ...]]:
    """The history rows of the migrations in ``config_map`` (their own table); None: a hand-run
    `lockstep run` (no --owner), which records in lockstep_schema_history."""
    table = kubetest.history_table(namespace, config_map) if config_map else sql_history_name("")
    return query(url, f"SELECT version, success FROM {table} ORDER BY version")


# --------------------------------------------------------------------------- Kubernetes


def event_count(api: client.ApiClient, namespace: str, name: str, reason: str) -> int:
    return sum(
        (e.count or 1) for e in kubetest.events_for(api, namespace, name) if e.reason == reason
    )


def job_dict(api: client.ApiClient, job: Any) -> dict[str, Any]:
    plain: dict[str, Any] = api.sanitize_for_serialization(job)  # type: ignore[no-untyped-call]
    return plain


def name_of(obj: Any) -> str:
    """metadata.name of a client model object."""
    return str(obj.metadata.name)


def job_state(api: client.ApiClient, namespace: str, name: str) -> str:
    job = client.BatchV1Api(api).read_namespaced_job(name, namespace)
    return cluster_facts.job_view(job_dict(api, job)).state


def assert_ready_once(
    api: client.ApiClient, namespace: str, name: str, body: Mapping[str, Any]
) -> str:
    """Ready for the current generation, one Job, one run recorded, one JobCreated; its name."""
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert kubetest.condition(body, "Reconciling") is None, status["conditions"]
    assert kubetest.condition(body, "Stalled") is None, status["conditions"]
    assert "activeJob" not in status, status
    (job,) = kubetest.jobs_of(api, namespace, name)
    assert len(status["history"]) == 1, status["history"]
    assert status["lastRun"]["job"] == name_of(job)
    assert event_count(api, namespace, name, "JobCreated") == 1
    return name_of(job)


class Replicas:
    """Operator replicas competing for the Lease, like a Deployment with `replicas: 2`.

    A background thread samples every replica's `lockstep_leader` gauge (the most leaders seen
    at once must stay 1) and, when `restart_exited` is on, restarts a replica that exited by
    itself, as the kubelet would (a killed replica stays down: the test decides).
    """

    def __init__(self, kubeconfig: Path, log_dir: Path, lease_namespace: str, count: int) -> None:
        self.members = [
            OperatorProcess(
                kubeconfig, log_dir, lease_namespace, name=f"replica-{i}", extra_args=REPLICA_ARGS
            )
            for i in range(count)
        ]
        self.exits: list[tuple[str, int]] = []
        self.most_leaders_at_once = 0
        self.restart_exited = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="replicas", daemon=True)

    def start(self) -> None:
        for member in self.members:
            member.start()
        self._thread.start()
        self.leader()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for member in self.members:
            member.stop()

    def leaders(self) -> list[OperatorProcess]:
        return [member for member in self.members if _leads(member)]

    def leader(self, timeout: float = 30.0) -> OperatorProcess:
        return wait_for("exactly one leading replica", self._single_leader, timeout=timeout)

    def _single_leader(self) -> OperatorProcess | None:
        found = self.leaders()
        return found[0] if len(found) == 1 else None

    def standby_exits(self) -> list[str]:
        """Replicas that exited more often than they became leader: a standby must never exit."""
        found = []
        for member in self.members:
            name = member.log_file.stem
            exits = sum(1 for who, _ in self.exits if who == name)
            led = member.log_file.read_text(errors="replace").count("became the leader")
            if exits > led:
                found.append(f"{name} exited {exits} times but led {led} times")
        return found

    def logs(self) -> str:
        return "\n".join(f"===== {m.log_file.name}\n{m.log()[-6000:]}" for m in self.members)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self.most_leaders_at_once = max(self.most_leaders_at_once, len(self.leaders()))
            if not self.restart_exited:
                continue
            for member in self.members:
                process = member.process
                if process is None or process.poll() is None:
                    continue
                self.exits.append((member.log_file.stem, process.returncode))
                member.process = None
                with suppress(AssertionError):
                    member.start()


def _leads(member: OperatorProcess) -> bool:
    if member.process is None or member.process.poll() is not None:
        return False
    try:
        return member.is_leader()
    except OSError:
        return False


@pytest.fixture
def replicas(
    operator: OperatorProcess,
    kubeconfig: Path,
    lease_namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Replicas]:
    """Two replicas in place of the session operator (stopped meanwhile: one Lease, one leader)."""
    failed_before = request.session.testsfailed
    operator.stop()
    group = Replicas(kubeconfig, tmp_path / "replicas", lease_namespace, count=2)
    try:
        group.start()
        yield group
    finally:
        group.stop()
        if request.session.testsfailed > failed_before:
            print(group.logs())  # shown with the failure report
        operator.start()
        operator.wait_leader()


class JobOverlapWatch:
    """Watches Lockstep's Jobs in a namespace; records Jobs active at once on one database.

    One watch stream gives the API server's own order of events, so "the next Job was created
    before the previous one finished" is seen as it happened.
    """

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.active: dict[str, set[str]] = {}
        self.most_active: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.created: list[str] = []
        self._stop = threading.Event()
        self._watch: Any = watch.Watch()  # type: ignore[no-untyped-call]
        listing: Any = client.BatchV1Api(api).list_namespaced_job(namespace)
        self._version = str(listing.metadata.resource_version)
        self._thread = threading.Thread(target=self._run, name="job-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch = client.BatchV1Api(self.api)
        selector = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(
                    batch.list_namespaced_job,
                    self.namespace,
                    label_selector=selector,
                    resource_version=self._version,
                    timeout_seconds=60,
                ):
                    self._observe(event["type"], job_dict(self.api, event["object"]))
            except ApiException as error:
                if error.status == 410:  # expired: not expected within a test
                    self.overlaps.append("watch expired; overlap check incomplete")
                    return
                time.sleep(0.5)
            except Exception:  # noqa: BLE001 - a broken stream is retried from the last version
                time.sleep(0.5)

    def _observe(self, kind: str, job: dict[str, Any]) -> None:
        metadata = job["metadata"]
        self._version = metadata["resourceVersion"]
        name = metadata["name"]
        database = metadata["labels"][constants.LABEL_DATABASE]
        active = self.active.setdefault(database, set())
        if kind == "ADDED" and name not in self.created:
            self.created.append(name)
        if kind != "DELETED" and cluster_facts.job_view(job).state == "Active":
            if name not in active and active:
                self.overlaps.append(f"{name} active while {sorted(active)} still active")
            active.add(name)
            self.most_active[database] = max(self.most_active.get(database, 0), len(active))
        else:
            active.discard(name)

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(5)


# --------------------------------------------------------------------------- tests


def test_killed_leader_is_replaced_and_the_running_job_adopted_and_applied_once(
    k8s: client.ApiClient, namespace: str, replicas: Replicas, pg_url: str
) -> None:
    prepare_log(pg_url)
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    slow = logged_migration(
        "v1", "SELECT pg_sleep(15);\nCREATE TABLE runs (id serial PRIMARY KEY);"
    )
    files = {"V1__slow.sql": slow, "V2__count.sql": "INSERT INTO runs DEFAULT VALUES;"}
    kubetest.create_config_map(k8s, namespace, "slow", files)
    kubetest.create_migration(k8s, namespace, sql_migration("slow", "slow"))
    kubetest.wait_for_condition(k8s, namespace, "slow", "Reconciling", reason="JobRunning")
    wait_for("the migration inside pg_sleep", lambda: migrating_now(pg_url), timeout=60)
    (job,) = kubetest.jobs_of(k8s, namespace, "slow")

    leader = replicas.leader()
    (standby,) = [m for m in replicas.members if m is not leader]
    killed_at = time.monotonic()
    leader.kill()
    wait_for("the standby to lead", lambda: _leads(standby), timeout=TAKEOVER_BOUND + 10)
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {takeover:.2f}s")
    assert takeover <= TAKEOVER_BOUND, f"standby led after {takeover:.1f}s > {TAKEOVER_BOUND}s"
    assert job_state(k8s, namespace, name_of(job)) == "Active"  # still running: adopted

    body = kubetest.wait_for_condition(k8s, namespace, "slow", "Ready", reason="Succeeded")
    assert body["status"]["appliedRevision"] == "2"
    assert assert_ready_once(k8s, namespace, "slow", body) == name_of(job)
    assert scalar(pg_url, "SELECT count(*) FROM runs") == 1
    assert history_rows(pg_url, namespace, "slow") == [("1", True), ("2", True)]
    assert [i.migration for i in intervals(pg_url)] == ["v1"]
    assert replicas.most_leaders_at_once == 1


def test_twenty_migrations_on_three_databases_never_overlap_and_apply_once(
    k8s: client.ApiClient,
    namespace: str,
    replicas: Replicas,
    postgres_admin_url: str,
) -> None:
    replicas.restart_exited = True  # a leader that cannot renew exits; the kubelet restarts it
    names = [f"m{i:02d}" for i in range(20)]
    databases = [f"lockstep_chaos_{uuid.uuid4().hex[:8]}_{d}" for d in range(3)]
    urls = [with_database(postgres_admin_url, d) for d in databases]
    on = {name: i % len(databases) for i, name in enumerate(names)}
    with connect(postgres_admin_url) as admin:
        for database in databases:
            admin.execute(f'CREATE DATABASE "{database}"')
    try:
        for d, url in enumerate(urls):
            prepare_log(url, *(n for n in names if on[n] == d))
        for name in names:
            url = with_search_path(urls[on[name]], name)
            kubetest.create_secret(k8s, namespace, f"db-{name}", {"url": url})
            work = f"SELECT pg_sleep(0.5);\nCREATE TABLE {name}_t (id int);"
            sql = {f"V1__{name}.sql": logged_migration(name, work)}
            kubetest.create_config_map(k8s, namespace, name, sql)
        jobs = JobOverlapWatch(k8s, namespace)
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=len(names)) as pool:
                list(
                    pool.map(
                        lambda n: kubetest.create_migration(
                            k8s, namespace, sql_migration(n, n, url_from=f"db-{n}")
                        ),
                        names,
                    )
                )
            for name in names:
                body = kubetest.wait_for_condition(
                    k8s, namespace, name, "Ready", reason="Succeeded", timeout=400
                )
                assert body["status"]["appliedRevision"] == "1"
                assert_ready_once(k8s, namespace, name, body)
        finally:
            jobs.stop()
        print(
            f"20 migrations on 3 databases Ready in {time.monotonic() - started:.1f}s; "
            f"replica exits: {replicas.exits}"
        )

        for d, url in enumerate(urls):
            expected = sorted(n for n in names if on[n] == d)
            found = intervals(url)
            assert sorted(i.migration for i in found) == expected
            assert not overlaps(found), overlaps(found)
            for name in expected:
                assert history_rows(with_search_path(url, name), namespace, name) == [("1", True)]
        assert len(jobs.created) == len(set(jobs.created)) == len(names)
        assert replicas.most_leaders_at_once == 1
        assert all(code == 3 for _, code in replicas.exits), replicas.exits
        assert not replicas.standby_exits(), replicas.standby_exits()
        # The operator's own rule (reason WaitingForJob), on top of the lock: one Job at a time.
        assert not jobs.overlaps, (
            f"{len(jobs.overlaps)} Jobs created while another Job of Lockstep's was active on "
            f"the same database (most at once per database: {jobs.most_active}): {jobs.overlaps}"
        )
    finally:
        with connect(postgres_admin_url) as admin:
            for database in databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def hand_made_job(name: str, secret: str, config_map: str) -> dict[str, Any]:
    """A Job a person wrote: Lockstep's image running `lockstep run`, which locks by itself."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "migrate",
                            "image": runner_image(),
                            "command": [
                                "lockstep",
                                "run",
                                "--tool",
                                "sql",
                                "--source",
                                "/migrations",
                                "--lock-wait-seconds",
                                "120",
                                "--result-file",
                                "/tmp/result.json",
                            ],
                            "env": [
                                {
                                    "name": "DATABASE_URL",
                                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}},
                                }
                            ],
                            "volumeMounts": [
                                {"name": "migrations", "mountPath": "/migrations"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "migrations", "configMap": {"name": config_map}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                }
            },
        },
    }


def test_hand_made_job_with_the_same_lock_waits_for_lockstep_job(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    prepare_log(pg_url, "by_hand")
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_secret(
        k8s, namespace, "db-by-hand", {"url": with_search_path(pg_url, "by_hand")}
    )
    # Long enough for the hand-made pod to start and queue while it runs, on a busy machine.
    slow = logged_migration("lockstep", "SELECT pg_sleep(12);\nCREATE TABLE t (id int);")
    kubetest.create_config_map(k8s, namespace, "m", {"V1__slow.sql": slow})
    quick = logged_migration("by-hand", "CREATE TABLE by_hand_t (id int);")
    kubetest.create_config_map(k8s, namespace, "by-hand", {"V1__by_hand.sql": quick})

    kubetest.create_migration(k8s, namespace, sql_migration("slow", "m"))
    wait_for("Lockstep's migration inside pg_sleep", lambda: migrating_now(pg_url), timeout=60)
    job: Any = hand_made_job("by-hand", "db-by-hand", "by-hand")
    client.BatchV1Api(k8s).create_namespaced_job(namespace, job)
    created_at = scalar(pg_url, "SELECT clock_timestamp()")
    # The proof that it waits: its session queues for the advisory lock on the server.
    wait_for("the hand-made Job queued on the lock", lambda: advisory_waiters(pg_url), timeout=60)
    assert migrating_now(pg_url)

    body = kubetest.wait_for_condition(k8s, namespace, "slow", "Ready", reason="Succeeded")
    assert_ready_once(k8s, namespace, "slow", body)
    wait_for(
        "the hand-made Job to complete",
        lambda: job_state(k8s, namespace, "by-hand") != "Active",
        timeout=60,
    )
    assert job_state(k8s, namespace, "by-hand") == "Succeeded"
    lockstep, by_hand = intervals(pg_url)
    assert (lockstep.migration, by_hand.migration) == ("lockstep", "by-hand")
    assert lockstep.start < created_at < lockstep.end <= by_hand.start
    assert history_rows(with_search_path(pg_url, "by_hand"), namespace, None) == [("1", True)]


def test_kube_apiserver_restart_mid_migration_ends_ready_with_one_job(
    k8s: client.ApiClient,
    namespace: str,
    replicas: Replicas,
    pg_url: str,
    local_cluster: bool,
) -> None:
    if not local_cluster:
        pytest.skip(
            "restarts the kube-apiserver process of the local control plane (testbed.cluster); "
            f"KUBECONFIG={os.environ.get('KUBECONFIG')} names a cluster it cannot restart"
        )
    from testbed import cluster

    replicas.restart_exited = True  # as the kubelet restarts a replica that lost its Lease
    prepare_log(pg_url)
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    slow = logged_migration("v1", "SELECT pg_sleep(10);\nCREATE TABLE runs (id int);")
    kubetest.create_config_map(k8s, namespace, "m", {"V1__slow.sql": slow})
    kubetest.create_migration(k8s, namespace, sql_migration("slow", "m"))
    kubetest.wait_for_condition(k8s, namespace, "slow", "Reconciling", reason="JobRunning")
    wait_for("the migration inside pg_sleep", lambda: migrating_now(pg_url), timeout=60)

    _, unreachable = cluster.restart_apiserver(downtime=3.0)
    print(f"kube-apiserver unreachable for {unreachable:.1f}s; replica exits: {replicas.exits}")

    body = kubetest.wait_for_condition(
        k8s, namespace, "slow", "Ready", reason="Succeeded", timeout=180
    )
    assert body["status"]["appliedRevision"] == "1"
    assert body["status"]["lastRun"]["result"] == "Succeeded"
    assert assert_ready_once(k8s, namespace, "slow", body)
    assert [i.migration for i in intervals(pg_url)] == ["v1"]
    assert history_rows(pg_url, namespace, "m") == [("1", True)]
    # The leader may exit (code 3: it could not renew in time) and come back; nothing else.
    assert all(code == 3 for _, code in replicas.exits), replicas.exits
    assert not replicas.standby_exits(), (replicas.standby_exits(), replicas.exits)
    replicas.leader(timeout=LEASE_DURATION * 3)
    assert replicas.most_leaders_at_once == 1


@dataclass
class DedicatedPostgres:
    base: Path
    admin_url: str
    port: int
    stops: list[float] = field(default_factory=list)

    def url(self, database: str) -> str:
        return with_database(self.admin_url, database)


@pytest.fixture
def dedicated_postgres(local_cluster: bool) -> Iterator[DedicatedPostgres]:
    """A PostgreSQL server of the test's own, to stop and start (never the shared one)."""
    if not local_cluster:
        pytest.skip(
            "stops and starts a PostgreSQL of its own on this machine's 127.0.0.1, which the "
            f"pods of KUBECONFIG={os.environ.get('KUBECONFIG')} cannot reach"
        )
    from testbed import databases
    from testbed.dbservers import host as dbhost

    # Under /tmp itself: the server's own user must reach the directory.
    base = Path("/tmp") / f"lockstep-chaos-pg-{uuid.uuid4().hex[:8]}"
    try:
        admin_url = dbhost.url_for_pods(databases.start_dedicated_postgres(base))
        yield DedicatedPostgres(base, admin_url, int(make_url(admin_url).port or 0))
    finally:
        databases.remove_dedicated_postgres(base)
        shutil.rmtree(base, ignore_errors=True)


def test_database_stopped_mid_migration_fails_the_job_then_retries_with_backoff_to_ready(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    dedicated_postgres: DedicatedPostgres,
) -> None:
    from testbed import databases

    server = dedicated_postgres
    with connect(server.admin_url) as admin:
        admin.execute('CREATE DATABASE "chaos"')
    url = server.url("chaos")
    prepare_log(url)
    body = "CREATE TABLE half_a (id int);\nSELECT pg_sleep(6);\nCREATE TABLE half_b (id int);"
    kubetest.create_secret(k8s, namespace, "db", {"url": url})
    kubetest.create_config_map(
        k8s, namespace, "m", {"V1__two_halves.sql": logged_migration("v1", body)}
    )
    retry = {"limit": 5, "backoffSeconds": 2, "maxBackoffSeconds": 4}
    kubetest.create_migration(k8s, namespace, sql_migration("flaky", "m", retry=retry))
    wait_for("the migration inside pg_sleep", lambda: migrating_now(url), timeout=60)

    databases.stop_dedicated_postgres(server.base, immediate=True)
    down_at = time.monotonic()
    failed = wait_for(
        "the interrupted attempt recorded as failed",
        lambda: (
            (b := kubetest.get_migration(k8s, namespace, "flaky"))["status"].get("failures") and b
        ),
        timeout=90,
    )
    first = failed["status"]["lastRun"]
    assert first["result"] == "Failed"
    assert first["reason"] not in constants.PERMANENT_FAILURE_REASONS, first
    assert failed["status"]["nextRetryAt"]
    # The retry comes while the database is still down; it waits for the lock's connection.
    wait_for(
        "the retry Job",
        lambda: len(kubetest.jobs_of(k8s, namespace, "flaky")) >= 2,
        timeout=30,
    )
    time.sleep(max(0.0, 8.0 - (time.monotonic() - down_at)))
    databases.start_dedicated_postgres(server.base, server.port)
    print(f"database down for {time.monotonic() - down_at:.1f}s; first failure: {first}")
    # Back up, before any retry can commit (it would sleep 6 s first): the interrupted attempt
    # had created half_a and logged its start, and none of it is there.
    assert scalar(url, "SELECT to_regclass('public.half_a')") is None
    assert scalar(url, f"SELECT count(*) FROM {LOG_TABLE}") == 0
    table = kubetest.history_table(namespace, "m")
    assert scalar(url, f"SELECT to_regclass('public.{table}')") is None or (
        history_rows(url, namespace, "m") == []
    )

    body_ready = kubetest.wait_for_condition(
        k8s, namespace, "flaky", "Ready", reason="Succeeded", timeout=180
    )
    status = body_ready["status"]
    assert status["appliedRevision"] == "1"
    assert status["failures"] == 0
    results = [run["result"] for run in status["history"]]
    assert results[0] == "Succeeded" and "Failed" in results, status["history"]
    jobs = sorted(name_of(j) for j in kubetest.jobs_of(k8s, namespace, "flaky"))
    assert len(jobs) == len(status["history"]), (jobs, status["history"])
    assert all(name.rsplit("-", 1)[-1].startswith("r") for name in jobs[1:]), jobs
    kubetest.wait_for_events(k8s, namespace, "flaky", {"Failed", "RetryScheduled", "Succeeded"})
    # Applied once, whole: one start and one end logged, both tables, one history row.
    assert [i.migration for i in intervals(url)] == ["v1"]
    assert history_rows(url, namespace, "m") == [("1", True)]
    assert scalar(url, "SELECT count(*) FROM half_a") == 0
    assert scalar(url, "SELECT count(*) FROM half_b") == 0


# ---------------------------------------------------------------------- deleted pods (issue 16)


@dataclass
class WritersWatch:
    """Polls pg_stat_activity at about 20 Hz: how many sessions of the database hold a
    transaction that wrote (``backend_xid``) at once. Two such sessions are two migrations
    changing the database together, whatever their tags; the largest count seen is kept."""

    url: str
    most: int = 0
    seen: list[tuple[float, list[tuple[Any, ...]]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> WritersWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with connect(self.url) as connection:
            while not self._stop.is_set():
                rows = connection.execute(
                    "SELECT pid, application_name, left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND backend_xid IS NOT NULL "
                    "AND pid <> pg_backend_pid()"
                ).fetchall()
                if len(rows) > 1:
                    self.seen.append((time.monotonic(), list(rows)))
                self.most = max(self.most, len(rows))
                time.sleep(0.05)


@pytest.mark.parametrize("grace", [0, None], ids=["grace-0", "default-grace"])
def test_deleted_migration_pod_never_overlaps_its_retry_and_converges(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    grace: int | None,
) -> None:
    """`kubectl delete pod` mid-file (grace 0: forced, or the default grace period): the file's
    backend never works beside the retry's, the status tells the truth, and the retry applies
    the file once, whole (docs/guarantees.md section 1).

    Grace 0 is a forced deletion: Kubernetes does not wait for the node (the retry may start
    while the old containers still run; the pod object stays only for the Job's tracking
    finalizer) and leaves how they end to the node: a kubelet still sends SIGTERM with a short
    grace, the pod agent kills at once. Either way is allowed: the retry's lock sidecar fences
    whatever the old run left."""
    prepare_log(pg_url)
    body = "CREATE TABLE half_a (id int);\nSELECT pg_sleep(20);\nCREATE TABLE half_b (id int);"
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", {"V1__slow.sql": logged_migration("v1", body)})
    retry = {"limit": 5, "backoffSeconds": 2, "maxBackoffSeconds": 4}
    kubetest.create_migration(k8s, namespace, sql_migration("evicted", "m", retry=retry))
    wait_for("the migration inside pg_sleep", lambda: migrating_now(pg_url), timeout=90)
    core = client.CoreV1Api(k8s)
    (job,) = kubetest.jobs_of(k8s, namespace, "evicted")
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name_of(job)}").items
    assert len(pods) == 1, [name_of(p) for p in pods]
    with WritersWatch(pg_url) as watch:
        core.delete_namespaced_pod(name_of(pods[0]), namespace, grace_period_seconds=grace)
        deleted_at = time.monotonic()
        if grace is None:
            # SIGTERM reached `lockstep run`: it cancelled its statement at once, long before the
            # 20 s sleep would have ended (and before the sidecar released the lock).
            wait_for("the cancelled statement to go", lambda: not migrating_now(pg_url), timeout=8)
            print(f"statement gone {time.monotonic() - deleted_at:.1f}s after the pod's deletion")
        ready = kubetest.wait_for_condition(
            k8s, namespace, "evicted", "Ready", reason="Succeeded", timeout=240
        )
    assert watch.most == 1, f"two migrations wrote at once: {watch.seen[:3]}"
    if grace == 0:
        # The retry's lock sidecar fenced before its run: it ended the old statement (killed
        # client, statement still running) or found none (SIGTERM reached `lockstep run`).
        retry_job = max(kubetest.jobs_of(k8s, namespace, "evicted"), key=name_of)
        (retry_pod,) = core.list_namespaced_pod(
            namespace, label_selector=f"job-name={name_of(retry_job)}"
        ).items
        sidecar_log = core.read_namespaced_pod_log(
            name_of(retry_pod), namespace, container=constants.LOCK_CONTAINER
        )
        fenced = [line for line in sidecar_log.splitlines() if line.startswith("fence: ")]
        assert fenced, sidecar_log
        assert fenced[0].startswith(("fence: terminated backend", "fence: no migration")), fenced
        print(f"the retry's fence: {fenced[0]}")
    status = ready["status"]
    assert status["appliedRevision"] == "1"
    failed = [run for run in status["history"] if run["result"] == "Failed"]
    assert failed, status["history"]
    for run in failed:
        assert run.get("reason") not in constants.PERMANENT_FAILURE_REASONS, run
        message = run.get("message", "")
        # PostgreSQL rolled the interrupted file back; the status never says it was applied.
        assert "applied" not in message.lower() or "rolled" in message, run
    # Applied once, whole: one start and one end logged, both tables, one history row.
    assert [i.migration for i in intervals(pg_url)] == ["v1"]
    assert history_rows(pg_url, namespace, "m") == [("1", True)]
    assert scalar(pg_url, "SELECT count(*) FROM half_a") == 0
    assert scalar(pg_url, "SELECT count(*) FROM half_b") == 0
