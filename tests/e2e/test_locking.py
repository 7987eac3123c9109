"""The database lock, seen through the operator: waiting is visible, a timeout is a failed try."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from dbtest import lock_held
from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

FILES = {"V1__t.sql": "CREATE TABLE t (id int);"}


def migration(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "m"}},
            "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
            **spec,
        },
    }


def test_waiting_for_the_lock_shows_in_status_and_proceeds_once_released(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", FILES)
    with lock_held(pg_url):
        kubetest.create_migration(k8s, namespace, migration("waits"))
        body = kubetest.wait_for_condition(
            k8s, namespace, "waits", "Reconciling", reason="WaitingForLock"
        )
        assert "migration lock" in kubetest.condition(body, "Reconciling")["message"]  # type: ignore[index]
    body = kubetest.wait_for_condition(k8s, namespace, "waits", "Ready", reason="Succeeded")
    assert body["status"]["appliedRevision"] == "1"
    assert len(kubetest.jobs_of(k8s, namespace, "waits")) == 1


def test_lock_timeout_fails_the_attempt_and_stalls_when_retries_are_exhausted(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", FILES)
    spec = {"timeouts": {"lockWaitSeconds": 2, "jobSeconds": 300}, "retry": {"limit": 0}}
    with lock_held(pg_url):
        kubetest.create_migration(k8s, namespace, migration("gives-up", **spec))
        body = kubetest.wait_for_condition(
            k8s, namespace, "gives-up", "Stalled", reason="RetriesExhausted", timeout=60
        )
    assert body["status"]["lastRun"]["reason"] == "LockTimeout"
    assert "lockWaitSeconds" in body["status"]["lastRun"]["message"]
    kubetest.wait_for(
        "the timed-out Job deleted",
        lambda: not kubetest.jobs_of(k8s, namespace, "gives-up"),
        timeout=30,
    )
