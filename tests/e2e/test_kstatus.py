"""What the real kstatus library (sigs.k8s.io/cli-utils, what Flux waits on) says about real
DatabaseMigrations at each stage, through the checker in tools/kstatus.

Every version of each object is recorded by a watch from before it exists, plus the API's own
answers to the create and to the spec change, and judged by one checker run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import alerting
from status_recorder import Recorder, observed, ready_reason
from testbed import kubetest
from testbed.kubetest import sql_migration
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def checker() -> Path:
    return alerting.kstatus()


def from_api(checker: Path, kubeconfig: Path, namespace: str, name: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(checker), "--kubeconfig", str(kubeconfig), "-n", namespace, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    verdict: dict[str, Any] = json.loads(result.stdout)
    return verdict


def test_in_progress_while_running_current_when_migrated_in_progress_after_a_spec_change(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    checker: Path,
    kubeconfig: Path,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "shop",
        {"V1__orders.sql": "SELECT pg_sleep(4); CREATE TABLE orders (id int PRIMARY KEY);"},
    )
    with Recorder(k8s, namespace) as recorder:
        kubetest.create_migration(k8s, namespace, sql_migration("shop"))
        kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
        # A spec change: the API's answer to the patch is the object before Lockstep saw it.
        patched = kubetest.patch_migration(
            k8s, namespace, "shop", {"spec": {"timeouts": {"jobSeconds": 1800}}}
        )
        kubetest.wait_for(
            "generation 2 observed and Ready",
            lambda: (
                observed(body := kubetest.get_migration(k8s, namespace, "shop"))
                and ready_reason(body) == "True/Succeeded"
            ),
        )
        versions = recorder.versions("shop")

    verdicts = alerting.kstatus_verdicts(checker, [*versions, patched])
    *judged, after_patch = list(zip([*versions, patched], verdicts, strict=True))
    seen = [(ready_reason(body), observed(body), v["status"]) for body, v in judged]

    # While the Job runs: InProgress, with Lockstep's own message.
    running = [(body, v) for body, v in judged if ready_reason(body) == "False/JobRunning"]
    assert running, f"no version with a running Job was recorded: {seen}"
    for body, verdict in running:
        assert verdict["status"] == "InProgress", verdict
        assert verdict["message"] == kubetest.condition(body, "Reconciling")["message"]  # type: ignore[index]

    # Migrated: Current.
    migrated = [
        v for body, v in judged if ready_reason(body) == "True/Succeeded" and observed(body)
    ]
    assert migrated and all(v["status"] == "Current" for v in migrated), seen

    # Right after the spec change: InProgress, because observedGeneration lags.
    body, verdict = after_patch
    assert body["metadata"]["generation"] == 2
    assert body["status"]["observedGeneration"] == 1
    assert verdict["status"] == "InProgress", verdict
    assert verdict["conditions"][0]["reason"] == "LatestGenerationNotObserved"

    # Once a status exists, kstatus says Current only when Ready=True for this generation.
    for body, verdict in judged:
        if body.get("status") is None:
            continue  # before the first reconcile: see the test below
        expected_current = observed(body) and ready_reason(body) == "True/Succeeded"
        assert (verdict["status"] == "Current") == expected_current, (ready_reason(body), verdict)

    # The checker reading the API itself agrees.
    assert from_api(checker, kubeconfig, namespace, "shop")["status"] == "Current"
    assert from_api(checker, kubeconfig, namespace, "absent")["status"] == "NotFound"


def test_failed_when_stalled_in_progress_while_retrying(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    checker: Path,
    kubeconfig: Path,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s, namespace, "broken", {"V1__copy.sql": "INSERT INTO orders SELECT * FROM legacy;"}
    )
    retry = {"limit": 1, "backoffSeconds": 2, "maxBackoffSeconds": 2}
    with Recorder(k8s, namespace) as recorder:
        kubetest.create_migration(k8s, namespace, sql_migration("broken", retry=retry))
        stalled = kubetest.wait_for_condition(
            k8s, namespace, "broken", "Stalled", reason="RetriesExhausted", timeout=120
        )
        versions = recorder.versions("broken")

    judged = list(zip(versions, alerting.kstatus_verdicts(checker, versions), strict=True))
    seen = [(ready_reason(body), v["status"]) for body, v in judged]
    retrying = [v for body, v in judged if ready_reason(body) == "False/RetryScheduled"]
    assert retrying and all(v["status"] == "InProgress" for v in retrying), seen
    failed = [v for body, v in judged if kubetest.condition(body, "Stalled")]
    assert failed and all(v["status"] == "Failed" for v in failed), seen
    message = kubetest.condition(stalled, "Stalled")["message"]  # type: ignore[index]
    assert failed[-1]["message"] == message
    assert "attempts failed" in message
    # Never Current once a status exists (before that: test_never_current_before_the_first_...).
    assert all(v["status"] != "Current" for body, v in judged if body.get("status")), seen

    verdict = from_api(checker, kubeconfig, namespace, "broken")
    assert verdict["status"] == "Failed"
    assert verdict["conditions"] == [
        {"type": "Stalled", "status": "True", "reason": "RetriesExhausted", "message": message}
    ]


def test_never_current_before_the_first_reconcile(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    checker: Path,
) -> None:
    # The API's answer to the create is the object before any controller could see it: the
    # CRD's status default (observedGeneration 0) makes kstatus read it as InProgress.
    created = kubetest.create_migration(k8s, namespace, sql_migration("early", url_from="missing"))
    assert created["metadata"]["generation"] == 1
    (verdict,) = alerting.kstatus_verdicts(checker, [created])
    assert verdict["status"] != "Current", verdict
