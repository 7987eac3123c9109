"""Argo CD's view of real DatabaseMigrations: the health check (health.lua, run in a Lua 5.1
runtime) on the objects the API serves at each stage.

The same objects are Argo CD-style fixtures: `LOCKSTEP_UPDATE_SNAPSHOTS=1` writes them to
charts/lockstep/files/argocd/lockstep.dev/DatabaseMigration/testdata/ (names and addresses made
stable) and rewrites health_test.yaml, which tests/unit/test_argocd_health.py runs offline.
Without it, the test checks the live objects and that health_test.yaml covers every stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import alerting
import argocd_health
from dbtest import rolled_back_by_hand
from e2e_databases import extra_database
from status_recorder import Recorder, Stages, observed, ready_reason, sanitize
from testbed import kubetest
from testbed.kubetest import sql_migration
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

# stage -> the health Argo CD must show. Written to testdata/<stage>.yaml.
EXPECTED = {
    "no-status": "Progressing",
    "secret-awaited": "Progressing",
    "secret-not-found": "Degraded",
    "job-running": "Progressing",
    "waiting-for-job": "Progressing",
    "migrated": "Healthy",
    "spec-changed": "Progressing",
    "retry-scheduled": "Progressing",
    "retries-exhausted": "Degraded",
    "suspended": "Suspended",
    "drifted": "Healthy",
    "planning": "Progressing",
    "awaiting-approval": "Suspended",
}
# Fixtures written by hand for states the operator cannot reach yet; kept by updates.
HAND_WRITTEN: dict[str, str] = {}
FIXTURE_HEADER = (
    "# Captured from a real e2e run by tests/e2e/test_argocd_health_live.py ({stage}).\n"
)


def first(versions: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """The first recorded version whose Ready condition is `status/reason`, observed."""
    for body in versions:
        if observed(body) and ready_reason(body) == wanted:
            return body
    seen = [ready_reason(v) for v in versions]
    raise AssertionError(f"no version with Ready {wanted} was recorded; seen {seen}")


def drive(
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    other_url: str,
    drift_url: str,
    approval_url: str,
) -> Stages:
    """Real DatabaseMigrations through every stage Argo CD has to tell apart."""
    stages = Stages()
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_secret(k8s, namespace, "other-db", {"url": other_url})
    kubetest.create_secret(k8s, namespace, "drift-db", {"url": drift_url})
    kubetest.create_secret(k8s, namespace, "approval-db", {"url": approval_url})
    two = {"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);"}
    kubetest.create_config_map(k8s, namespace, "two", two)
    slow = {"V1__orders.sql": "SELECT pg_sleep(4); CREATE TABLE orders (id int PRIMARY KEY);"}
    kubetest.create_config_map(k8s, namespace, "shop", slow)
    kubetest.create_config_map(
        k8s, namespace, "broken", {"V1__copy.sql": "INSERT INTO nowhere SELECT 1;"}
    )
    retry = {"limit": 1, "backoffSeconds": 2, "maxBackoffSeconds": 2}
    with Recorder(k8s, namespace) as recorder:
        created = kubetest.create_migration(
            k8s,
            namespace,
            sql_migration("orphan", "shop", "gone", timeouts={"missingInputSeconds": 0}),
        )
        # A Secret a GitOps sync or a secrets operator has yet to create: waited for, not failed.
        kubetest.create_migration(k8s, namespace, sql_migration("awaited", "shop", "later"))
        stages.add("no-status", created, "the API's answer to the create")
        # Two migrations of one database: the second waits for the first one's Job.
        drift_check = {"intervalSeconds": 30}
        kubetest.create_migration(
            k8s, namespace, sql_migration("drifted", "two", "drift-db", driftCheck=drift_check)
        )
        kubetest.create_migration(k8s, namespace, sql_migration("shop", "shop"))
        kubetest.wait_for_condition(k8s, namespace, "shop", "Reconciling", reason="JobRunning")
        kubetest.create_migration(k8s, namespace, sql_migration("reports", "shop"))
        kubetest.create_migration(k8s, namespace, sql_migration("paused", "shop", suspend=True))
        kubetest.create_migration(
            k8s, namespace, sql_migration("broken", "broken", "other-db", retry=retry)
        )
        kubetest.create_migration(
            k8s, namespace, sql_migration("approval", "two", "approval-db", approval="Always")
        )
        kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
        kubetest.wait_for_condition(k8s, namespace, "drifted", "Ready", reason="Succeeded")
        # the next drift check (every 30 s) sees revision 1
        rolled_back_by_hand(drift_url, kubetest.history_table(namespace, "two"))
        kubetest.wait_for_condition(k8s, namespace, "orphan", "Stalled", reason="SecretNotFound")
        kubetest.wait_for_condition(
            k8s, namespace, "awaited", "Reconciling", reason="SecretNotFound"
        )
        kubetest.wait_for_condition(k8s, namespace, "paused", "Ready", "False", reason="Suspended")
        kubetest.wait_for_condition(
            k8s, namespace, "broken", "Stalled", reason="RetriesExhausted", timeout=120
        )
        patched = kubetest.patch_migration(
            k8s, namespace, "shop", {"spec": {"timeouts": {"jobSeconds": 1800}}}
        )
        stages.add("spec-changed", patched, "the API's answer to a spec change")
        kubetest.wait_for(
            "reports Ready",
            lambda: (
                ready_reason(kubetest.get_migration(k8s, namespace, "reports")) == "True/Succeeded"
            ),
        )
        kubetest.wait_for_condition(k8s, namespace, "drifted", "Drifted", timeout=90)
        kubetest.wait_for_condition(
            k8s, namespace, "approval", "Ready", "False", reason="AwaitingApproval"
        )
        versions = {
            name: recorder.versions(name) for name in ("orphan", "awaited", "shop", "reports")
        }
        versions["approval"] = recorder.versions("approval")
        versions |= {name: recorder.versions(name) for name in ("paused", "broken", "drifted")}

    stages.add("secret-awaited", first(versions["awaited"], "False/SecretNotFound"))
    stages.add("secret-not-found", first(versions["orphan"], "False/SecretNotFound"))
    stages.add("job-running", first(versions["shop"], "False/JobRunning"))
    stages.add("waiting-for-job", first(versions["reports"], "False/WaitingForJob"))
    stages.add("migrated", first(versions["shop"], "True/Succeeded"))
    stages.add("retry-scheduled", first(versions["broken"], "False/RetryScheduled"))
    stages.add("retries-exhausted", first(versions["broken"], "False/RetriesExhausted"))
    stages.add("suspended", first(versions["paused"], "False/Suspended"))
    stages.add("planning", first(versions["approval"], "False/Planning"))
    stages.add("awaiting-approval", first(versions["approval"], "False/AwaitingApproval"))
    drifted = [v for v in versions["drifted"] if kubetest.condition(v, "Drifted")]
    assert drifted, [ready_reason(v) for v in versions["drifted"]]
    stages.add("drifted", drifted[0], "Ready True/Succeeded, Drifted True after a hand edit")
    return stages


def test_argocd_health_of_real_migrations_at_each_stage(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
    drift_pg_url: str,
    postgres_admin_url: str,
) -> None:
    with extra_database(postgres_admin_url) as approval_url:
        stages = drive(k8s, namespace, pg_url, other_pg_url, drift_pg_url, approval_url)
    assert set(stages.items) == set(EXPECTED)
    got = {name: argocd_health.evaluate(stage.body) for name, stage in stages.items.items()}
    wrong = {n: (EXPECTED[n], h) for n, h in got.items() if h["status"] != EXPECTED[n]}
    assert not wrong, wrong

    # Degraded carries the Stalled condition's message; Progressing a running Job's.
    stalled = kubetest.condition(stages.items["retries-exhausted"].body, "Stalled")
    assert got["retries-exhausted"]["message"] == stalled["message"]  # type: ignore[index]
    assert got["job-running"]["message"].startswith("job shop-")
    assert got["spec-changed"]["message"] == "Waiting for Lockstep to observe generation 2"
    drift = kubetest.condition(stages.items["drifted"].body, "Drifted")
    assert got["drifted"]["message"].endswith(f"; drifted: {drift['message']}")  # type: ignore[index]

    if alerting.UPDATE_SNAPSHOTS:
        write_fixtures(stages, namespace)
    listed = {Path(t["inputPath"]).stem: t["healthStatus"]["status"] for t in load_tests()}
    assert listed == {**EXPECTED, **HAND_WRITTEN}, "health_test.yaml and this test disagree"


def load_tests() -> list[dict[str, Any]]:
    return argocd_health.load_tests()


def write_fixtures(stages: Stages, namespace: str) -> None:
    argocd_health.TESTDATA.mkdir(parents=True, exist_ok=True)
    tests = []
    for name, stage in sorted(stages.items.items()):
        body = sanitize(stage.body, namespace)
        header = FIXTURE_HEADER.format(stage=stage.note or f"Ready {ready_reason(stage.body)}")
        text = header + yaml.safe_dump(body, sort_keys=False, width=100)
        (argocd_health.TESTDATA / f"{name}.yaml").write_text(text)
        tests.append((name, argocd_health.evaluate(body)))
    for name in HAND_WRITTEN:
        body = yaml.safe_load((argocd_health.TESTDATA / f"{name}.yaml").read_text())
        tests.append((name, argocd_health.evaluate(body)))
    document = {
        "tests": [
            {"healthStatus": health, "inputPath": f"testdata/{name}.yaml"}
            for name, health in sorted(tests)
        ]
    }
    argocd_health.HEALTH_TESTS.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
