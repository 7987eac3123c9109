"""The operator against a real API server: Jobs, retries, stalls, GC, PodSecurity, adoption."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import crd_eval
from testbed import kubetest
from testbed.kubetest import quickstart_documents, sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


def scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def test_quickstart_goes_ready_through_a_real_job(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    kubectl: Path,
    kubeconfig: Path,
) -> None:
    kubetest.create_objects(k8s, namespace, quickstart_documents(pg_url))
    body = kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")

    status = body["status"]
    table = kubetest.history_table(namespace, "shop-migrations")  # its own history
    last_version = scalar(pg_url, f"SELECT max(version::int) FROM {table}")
    assert status["appliedRevision"] == str(last_version)
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["lastRun"]["result"] == "Succeeded"
    assert status["history"][0]["job"] == status["lastRun"]["job"]
    assert kubetest.condition(body, "Reconciling") is None
    assert kubetest.condition(body, "Stalled") is None
    assert scalar(pg_url, "SELECT count(*) FROM customers") == 0  # the table exists
    (job,) = kubetest.jobs_of(k8s, namespace, "shop")
    assert job.metadata.name == status["lastRun"]["job"]
    assert job.spec.backoff_limit == 0
    reasons = wait_for(
        "Succeeded event",
        lambda: (r := kubetest.event_reasons(k8s, namespace, "shop")) and "Succeeded" in r and r,
    )
    assert "JobCreated" in reasons
    # `kubectl describe` shows who reported them: Lockstep, not the framework it is built on.
    sources = {
        (e.source.component if e.source else None, e.reporting_component)
        for e in kubetest.events_for(k8s, namespace, "shop")
    }
    assert sources == {("lockstep", "lockstep")}

    table = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", "dbm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "TOOL", "TARGET", "APPLIED", "READY", "AGE"]
    assert row.split()[:5] == ["shop", "sql", "head", str(last_version), "True"]

    exported = operator.metrics()
    this = f'name="shop",namespace="{namespace}"'
    assert f"lockstep_migration_ready{{{this}}} 1.0" in exported
    assert f"lockstep_migration_failing{{{this}}} 0.0" in exported
    assert f'lockstep_migration_runs_total{{{this},result="Succeeded",tool="sql"}} 1.0' in exported
    assert f"lockstep_lock_wait_seconds_count{{{this}}} 1.0" in exported
    assert "lockstep_leader 1.0" in exported
    assert 'lockstep_build_info{kopf_version="' in exported
    assert "postgresql://" not in exported and "lockstep-test" not in exported


def test_invalid_specs_are_rejected_at_apply_time(
    k8s: client.ApiClient, namespace: str, crds: None
) -> None:
    """The same cases the unit tests check offline, now against the real kube-apiserver.

    Needs no operator, only the CRD (as the first test of a session it would otherwise meet 404).
    """
    cases = crd_eval.load_invalid_cases()
    assert len(cases) >= 15
    failures = []
    for case in cases:
        try:
            kubetest.create_migration(k8s, namespace, case.object)
        except ApiException as error:
            body = json.loads(error.body).get("message", "") if error.body else ""
            if error.status != 422 or case.message not in body or case.field not in body:
                failures.append(f"{case.name}: HTTP {error.status}: {body[:400]}")
            continue
        failures.append(f"{case.name}: was accepted")
    assert not failures, "\n".join(failures)


def test_failing_migration_retries_with_backoff_then_stalls_and_retry_annotation_rearms(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "broken",
        {
            "V1__create_items.sql": "CREATE TABLE items (id int PRIMARY KEY);",
            "V2__copy_from_legacy.sql": "INSERT INTO items SELECT id FROM legacy_items;",
        },
    )
    spec = {"retry": {"limit": 2, "backoffSeconds": 1, "maxBackoffSeconds": 2}}
    kubetest.create_migration(k8s, namespace, sql_migration("broken", "broken", **spec))

    body = kubetest.wait_for_condition(
        k8s, namespace, "broken", "Stalled", reason="RetriesExhausted", timeout=120
    )
    status = body["status"]
    assert status["failures"] == 3
    assert "legacy_items" in status["lastRun"]["logTail"]
    assert status["lastRun"]["result"] == "Failed"
    assert [run["result"] for run in status["history"][:3]] == ["Failed"] * 3
    assert kubetest.condition(body, "Ready")["status"] == "False"  # type: ignore[index]
    assert kubetest.condition(body, "Reconciling") is None
    names = sorted(j.metadata.name for j in kubetest.jobs_of(k8s, namespace, "broken"))
    assert [n.rsplit("-", 1)[-1] for n in names][1:] == ["r1", "r2"]
    kubetest.wait_for_events(k8s, namespace, "broken", {"Failed", "RetryScheduled", "Stalled"})
    failed = [e for e in kubetest.events_for(k8s, namespace, "broken") if e.reason == "Failed"]
    assert any("legacy_items" in (e.message or "") for e in failed)
    history = kubetest.history_table(namespace, "broken")
    assert scalar(pg_url, f"SELECT count(*) FROM {history}") == 1  # V1 only

    # The cause is fixed outside the spec; the annotation asks for another try.
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE legacy_items (id int); INSERT INTO legacy_items VALUES (7)")
        )
    engine.dispose()
    kubetest.patch_migration(
        k8s, namespace, "broken", {"metadata": {"annotations": {"lockstep.dev/retry": "fixed"}}}
    )
    body = kubetest.wait_for_condition(k8s, namespace, "broken", "Ready", reason="Succeeded")
    assert body["status"]["appliedRevision"] == "2"
    assert kubetest.condition(body, "Stalled") is None
    assert scalar(pg_url, "SELECT count(*) FROM items") == 1


def test_deleting_a_migration_garbage_collects_its_jobs_and_pods(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_objects(k8s, namespace, quickstart_documents(pg_url))
    kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    assert kubetest.jobs_of(k8s, namespace, "shop")
    kubetest.delete_migration(k8s, namespace, "shop")
    core = client.CoreV1Api(k8s)
    wait_for("jobs deleted", lambda: not kubetest.jobs_of(k8s, namespace, "shop"), timeout=60)
    wait_for(
        "pods deleted",
        lambda: (
            not core.list_namespaced_pod(
                namespace, label_selector="lockstep.dev/migration=shop"
            ).items
        ),
        timeout=60,
    )


def test_jobs_are_admitted_in_a_namespace_enforcing_restricted_pod_security(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    core = client.CoreV1Api(k8s)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    kubetest.create_objects(k8s, namespace, quickstart_documents(pg_url))
    kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    pods = core.list_namespaced_pod(namespace, label_selector="lockstep.dev/migration=shop").items
    assert len(pods) == 1


def test_operator_restart_mid_job_adopts_the_running_job(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "slow",
        {
            "V1__slow.sql": "SELECT pg_sleep(6); CREATE TABLE runs (id serial PRIMARY KEY);",
            "V2__count.sql": "INSERT INTO runs DEFAULT VALUES;",
        },
    )
    kubetest.create_migration(k8s, namespace, sql_migration("slow", "slow"))
    kubetest.wait_for_condition(k8s, namespace, "slow", "Reconciling", reason="JobRunning")
    operator.restart()
    body = kubetest.wait_for_condition(k8s, namespace, "slow", "Ready", reason="Succeeded")
    assert len(kubetest.jobs_of(k8s, namespace, "slow")) == 1
    assert len(body["status"]["history"]) == 1
    assert scalar(pg_url, "SELECT count(*) FROM runs") == 1
    assert event_count(k8s, namespace, "slow", "JobCreated") == 1


def event_count(api: client.ApiClient, namespace: str, name: str, reason: str) -> int:
    return sum(
        (e.count or 1) for e in kubetest.events_for(api, namespace, name) if e.reason == reason
    )


def test_suspend_pauses_and_resumes(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", {"V1__t.sql": "CREATE TABLE t (id int);"})
    kubetest.create_migration(k8s, namespace, sql_migration("paused", "m", suspend=True))
    kubetest.wait_for_condition(k8s, namespace, "paused", "Ready", "False", reason="Suspended")
    time.sleep(2)
    assert kubetest.jobs_of(k8s, namespace, "paused") == []
    kubetest.patch_migration(k8s, namespace, "paused", {"spec": {"suspend": False}})
    kubetest.wait_for_condition(k8s, namespace, "paused", "Ready", reason="Succeeded")


def test_drift_check_reports_a_change_made_by_hand(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", {"V1__t.sql": "CREATE TABLE t (id int);"})
    spec = {"driftCheck": {"intervalSeconds": 30}}
    kubetest.create_migration(k8s, namespace, sql_migration("watched", "m", **spec))
    kubetest.wait_for_condition(k8s, namespace, "watched", "Ready", reason="Succeeded")
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:  # someone applies a migration by hand
        connection.execute(
            sa.text(
                f"INSERT INTO {kubetest.history_table(namespace, 'm')} (version, description, "
                "checksum, applied_at, execution_ms, success) "
                "VALUES ('2', 'by hand', 'x', now(), 1, true)"
            )
        )
    engine.dispose()
    body = kubetest.wait_for_condition(k8s, namespace, "watched", "Drifted", timeout=75)
    message = kubetest.condition(body, "Drifted")["message"]  # type: ignore[index]
    assert "at revision 2" in message and "applied 1" in message
    kubetest.wait_for_events(k8s, namespace, "watched", {"DriftDetected"})
    assert f'lockstep_migration_drift{{name="watched",namespace="{namespace}"}} 1.0' in (
        operator.metrics()
    )
