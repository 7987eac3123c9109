"""Bounded history on a real control plane: finished Jobs beyond the newest go once status records
them, and a finished Job that is gone never makes the operator run the migration again or change
its status, not even after a restart (whose first pass reads everything afresh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testbed import kubetest
from testbed.kubetest import sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

MIGRATION = "history"


@pytest.fixture
def keeping_one(
    operator: OperatorProcess, kubeconfig: Path, lease_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator with its default retention (one finished Job per migration), in place of
    the session's (which keeps every Job for the other tests to inspect)."""
    operator.stop()
    own = OperatorProcess(
        kubeconfig,
        tmp_path,
        lease_namespace,
        name="retention",
        extra_env={"LOCKSTEP_KEEP_FINISHED_JOBS": "1"},
    )
    try:
        own.start()
        own.wait_leader()
        yield own
    finally:
        own.stop()
        operator.start()
        operator.wait_leader()


def job_names(k8s: client.ApiClient, namespace: str) -> list[str]:
    return sorted(str(j.metadata.name) for j in kubetest.jobs_of(k8s, namespace, MIGRATION))


def ready_after(k8s: client.ApiClient, namespace: str, previous_job: str | None) -> dict[str, Any]:
    """Ready=True with a lastRun other than `previous_job`."""

    def probe() -> dict[str, Any] | None:
        body = kubetest.get_migration(k8s, namespace, MIGRATION)
        ready = kubetest.condition(body, "Ready") or {}
        last = (body.get("status") or {}).get("lastRun") or {}
        done = ready.get("status") == "True" and last.get("job") not in (None, previous_job)
        return body if done else None

    return wait_for("Ready with a new run", probe, timeout=120)


def test_old_jobs_go_and_a_deleted_finished_job_is_never_run_again(
    keeping_one: OperatorProcess, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "schema", {"V1__a.sql": "CREATE TABLE a (id int);"})
    kubetest.create_migration(k8s, namespace, sql_migration(MIGRATION, "schema"))
    first = ready_after(k8s, namespace, None)["status"]["lastRun"]["job"]

    # A new spec, a new run; once status records it, the first run's Job goes.
    kubetest.patch_migration(k8s, namespace, MIGRATION, {"spec": {"timeouts": {"jobSeconds": 700}}})
    body = ready_after(k8s, namespace, first)
    second = body["status"]["lastRun"]["job"]
    assert [run["job"] for run in body["status"]["history"][:2]] == [second, first]
    wait_for("the first run's Job to go", lambda: job_names(k8s, namespace) == [second], 60)

    # The newest finished Job goes too (kubectl delete, a cleanup, a namespace quota...).
    settled = kubetest.get_migration(k8s, namespace, MIGRATION)["status"]
    client.BatchV1Api(k8s).delete_namespaced_job(second, namespace, propagation_policy="Background")
    wait_for("the second Job to go", lambda: job_names(k8s, namespace) == [], 60)
    # A restart: the first pass over every migration reads the Secret and ConfigMap afresh.
    keeping_one.stop()
    keeping_one.start()
    keeping_one.wait_leader()

    def passes_since_restart(count: int) -> bool:
        return any(
            line.startswith("lockstep_reconcile_total{") and float(line.rsplit(" ", 1)[1]) >= count
            for line in keeping_one.metrics().splitlines()
        )

    wait_for("the first pass after the restart", lambda: passes_since_restart(1), 60)
    kubetest.patch_migration(  # and one more event on the resource itself
        k8s, namespace, MIGRATION, {"metadata": {"annotations": {"touched": "yes"}}}
    )
    wait_for("the pass of that event", lambda: passes_since_restart(2), 60)
    with pytest.raises(AssertionError, match="timed out"):
        wait_for("a new Job (there must be none)", lambda: job_names(k8s, namespace), 10)
    after = kubetest.get_migration(k8s, namespace, MIGRATION)["status"]
    assert after == settled, "a deleted finished Job changed a truthful status"
