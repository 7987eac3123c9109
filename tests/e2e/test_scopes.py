"""Several Lockstep instances in one cluster, each owning the DatabaseMigrations its selector
matches (tenants, or shards of a large fleet), each leading through its own Lease."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dbtest import scalar
from testbed import kubetest
from testbed.kubetest import sql_migration
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

SHARDS = {"payments": "team=payments", "search": "team in (search,ranking)"}


@pytest.fixture
def instances(
    operator: OperatorProcess,
    k8s: client.ApiClient,
    kubeconfig: Path,
    lease_namespace: str,
    tmp_path: Path,
) -> Iterator[dict[str, OperatorProcess]]:
    """Two scoped instances in place of the session operator (which would take everything)."""
    operator.stop()
    started: dict[str, OperatorProcess] = {}
    try:
        for shard, selector in SHARDS.items():
            started[shard] = OperatorProcess(
                kubeconfig,
                tmp_path / shard,
                lease_namespace,
                name=shard,
                extra_args=(
                    "--selector",
                    selector,
                    "--lease-name",
                    f"lockstep-{shard}",
                    "--webhook-configuration",
                    f"lockstep-gate-{shard}",
                ),
            )
            started[shard].start()
        for instance in started.values():
            instance.wait_leader()  # both lead: one Lease each
        yield started
    finally:
        for instance in started.values():
            instance.stop()
        admission = client.AdmissionregistrationV1Api(k8s)
        for shard in SHARDS:
            with contextlib.suppress(ApiException):
                admission.delete_mutating_webhook_configuration(f"lockstep-gate-{shard}")
        operator.start()
        operator.wait_leader()


def labelled(name: str, team: str, config_map: str = "schema") -> dict[str, object]:
    body = sql_migration(name, config_map)
    body["metadata"] = {"name": name, "labels": {"team": team}}
    return body


# Holds the database's migration lock long enough for another shard's run to wait visibly
# (WaitingForLock shows after 10 s of waiting: planning.chain.LOCK_WAIT_SHOWN_AFTER_SECONDS).
SLOW = {"V1__slow.sql": "SELECT pg_sleep(30);\nCREATE TABLE pay (id int);"}
QUICK = {"V1__quick.sql": "CREATE TABLE rank (id int);"}


def lock_taken(url: str) -> bool:
    """A session of this database holds an advisory lock (a migration's)."""
    return bool(
        scalar(
            url,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
        )
    )


def labels_of_job_and_pods(
    k8s: client.ApiClient, namespace: str, migration: str
) -> list[dict[str, str]]:
    (job,) = kubetest.jobs_of(k8s, namespace, migration)
    pods = client.CoreV1Api(k8s).list_namespaced_pod(
        namespace, label_selector=f"job-name={job.metadata.name}"
    )
    return [job.metadata.labels, *(pod.metadata.labels for pod in pods.items)]


def test_each_instance_reconciles_only_what_its_selector_matches(
    instances: dict[str, OperatorProcess],
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "schema", {"V1__a.sql": "CREATE TABLE a (id int);"})
    kubetest.create_migration(k8s, namespace, labelled("pay", "payments"))
    kubetest.create_migration(k8s, namespace, labelled("rank", "ranking"))
    kubetest.create_migration(k8s, namespace, labelled("stray", "billing"))  # nobody's

    kubetest.wait_for_condition(k8s, namespace, "pay", "Ready", reason="Succeeded")
    kubetest.wait_for_condition(k8s, namespace, "rank", "Ready", reason="Succeeded")
    time.sleep(3)  # an instance that wrongly took "stray" would have written its status by now
    stray = kubetest.get_migration(k8s, namespace, "stray")
    assert stray["status"] == {"observedGeneration": 0}  # the CRD's default: nobody looked
    assert kubetest.jobs_of(k8s, namespace, "stray") == []

    payments, search = instances["payments"].metrics(), instances["search"].metrics()
    assert f'name="pay",namespace="{namespace}"' in payments
    assert f'name="rank",namespace="{namespace}"' not in payments
    assert f'name="rank",namespace="{namespace}"' in search
    assert f'name="pay",namespace="{namespace}"' not in search
    assert "stray" not in payments + search
    for instance in instances.values():
        assert "acting on DatabaseMigrations matching: team" in instance.log()

    # A migration relabelled into the other shard moves with its label.
    kubetest.patch_migration(
        k8s, namespace, "stray", {"metadata": {"labels": {"team": "payments"}}}
    )
    kubetest.wait_for_condition(k8s, namespace, "stray", "Ready", reason="Succeeded")
    assert 'name="stray"' in instances["payments"].metrics()


def test_each_shard_watches_only_its_own_jobs_and_the_database_lock_serializes_them(
    instances: dict[str, OperatorProcess],
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
) -> None:
    """Two shards, one database: neither sees the other's Job (each Job carries its shard's
    label and the API server filters by it), so the second run starts while the first holds the
    database's lock, waits for it, and says so; then both succeed (ADR 0020)."""
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "slow", SLOW)
    kubetest.create_config_map(k8s, namespace, "quick", QUICK)
    kubetest.create_migration(k8s, namespace, labelled("pay", "payments", "slow"))
    kubetest.wait_for("the payments run holding the lock", lambda: lock_taken(pg_url), timeout=60)
    kubetest.create_migration(k8s, namespace, labelled("rank", "ranking", "quick"))

    waiting = kubetest.wait_for_condition(
        k8s, namespace, "rank", "Reconciling", reason="WaitingForLock", timeout=60
    )
    assert "migration lock" in str(kubetest.condition(waiting, "Reconciling"))
    running = kubetest.get_migration(k8s, namespace, "pay")
    assert kubetest.condition(running, "Reconciling")["reason"] == "JobRunning"  # type: ignore[index]

    for name in ("pay", "rank"):
        body = kubetest.wait_for_condition(k8s, namespace, name, "Ready", reason="Succeeded")
        assert body["status"]["appliedRevision"] == "1"
    for name, team in (("pay", "payments"), ("rank", "ranking")):
        for labels in labels_of_job_and_pods(k8s, namespace, name):
            assert labels["team"] == team
            assert labels["app.kubernetes.io/managed-by"] == "lockstep"


def test_a_run_started_before_sharding_is_adopted_and_labelled_by_its_shard(
    operator: OperatorProcess,
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """An instance without a selector (an older version, or before sharding was turned on)
    started the run; the shard that takes over would not see its unlabelled Job, so adopting it
    (the 409 on the same name) labels it and its pod: one run, recorded with its outcome."""
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "slow", SLOW)
    kubetest.create_migration(k8s, namespace, labelled("pay", "payments", "slow"))
    kubetest.wait_for("the run holding the lock", lambda: lock_taken(pg_url), timeout=60)
    (before,) = kubetest.jobs_of(k8s, namespace, "pay")
    assert "team" not in before.metadata.labels

    request.getfixturevalue("instances")  # the unscoped operator stops, two shards start
    kubetest.wait_for(
        "the payments shard labelling the running Job and its pod",
        lambda: all(
            labels.get("team") == "payments"
            for labels in labels_of_job_and_pods(k8s, namespace, "pay")
        ),
        timeout=60,
    )
    body = kubetest.wait_for_condition(k8s, namespace, "pay", "Ready", reason="Succeeded")
    assert [job.metadata.name for job in kubetest.jobs_of(k8s, namespace, "pay")] == [
        before.metadata.name
    ]
    assert [run["job"] for run in body["status"]["history"]] == [before.metadata.name]
