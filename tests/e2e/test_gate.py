"""The rollout gate and expand/contract, with a real Deployment (examples/expand-contract)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from dbtest import column_names, lock_held
from expand_contract import (
    APP,
    app_pods,
    deployment,
    documents,
    expand,
    gated,
    migration_files,
    new_pods_gated_old_serving,
    rolled_out,
)
from testbed import kubetest
from testbed.kubetest import wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


def start_on_version_1(api: client.ApiClient, namespace: str, url: str) -> None:
    """The starting point: schema V1 applied for app:1, two app:1 pods serving."""
    kubetest.create_secret(api, namespace, "shop-db", {"url": url})
    kubetest.create_config_map(api, namespace, "shop-migrations", migration_files(1))
    kubetest.create_migration(api, namespace, expand("1", 1))
    kubetest.wait_for_condition(api, namespace, "shop-expand", "Ready", reason="Succeeded")
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment(1))
    wait_for("app v1 rolled out", lambda: rolled_out(api, namespace, 1), timeout=60)
    assert not any(gated(p) for p in app_pods(api, namespace))


def bump_migration(
    api: client.ApiClient, namespace: str, files: dict[str, str], target: str
) -> None:
    kubetest.replace_config_map(api, namespace, "shop-migrations", files)
    kubetest.patch_migration(
        api, namespace, "shop-expand", {"spec": {"target": target, "image": f"{APP}:2"}}
    )


def bump_app(api: client.ApiClient, namespace: str) -> None:
    body = deployment(2)
    client.AppsV1Api(api).patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": body["spec"]["template"]}}
    )


def release_times(api: client.ApiClient, namespace: str) -> tuple[float, float]:
    """When the migration was first seen Ready, and when no gated pod was left (50 ms polls)."""
    ready_at = released_at = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (ready_at is None or released_at is None):
        now = time.monotonic()
        body = kubetest.get_migration(api, namespace, "shop-expand")
        if ready_at is None and (kubetest.condition(body, "Ready") or {}).get("status") == "True":
            ready_at = now
        if ready_at is not None and not any(gated(p) for p in app_pods(api, namespace)):
            released_at = now
        time.sleep(0.05)
    assert ready_at is not None and released_at is not None, "no release within 60s"
    return ready_at, released_at


def test_new_pods_wait_for_the_migration_and_are_released_when_it_succeeds(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    start_on_version_1(k8s, namespace, pg_url)
    with lock_held(pg_url):  # keeps the migration waiting, so the gate can be seen holding
        bump_migration(k8s, namespace, migration_files(1, 2), "2")
        bump_app(k8s, namespace)
        wait_for("new pods gated, old serving", lambda: new_pods_gated_old_serving(k8s, namespace))
        time.sleep(2)  # the gate holds, whatever the Deployment controller tries
        assert new_pods_gated_old_serving(k8s, namespace)
        body = kubetest.get_migration(k8s, namespace, "shop-expand")
        assert body["status"]["gatedPods"] >= 1

    ready_at, released_at = release_times(k8s, namespace)
    latency = released_at - ready_at
    print(f"gate release latency (Ready seen → no gated pod seen): {latency:.2f}s")
    assert latency < 2.0
    wait_for("app v2 rolled out", lambda: rolled_out(k8s, namespace, 2), timeout=60)
    assert "display_name" in column_names(pg_url, "customers")
    kubetest.wait_for_events(k8s, namespace, "shop-expand", {"ReleasedPods"})
    assert 'lockstep_gated_pods{name="shop-expand"' in operator.metrics()


def test_a_failed_migration_keeps_new_pods_gated_and_old_pods_serving(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    start_on_version_1(k8s, namespace, pg_url)
    broken = {**migration_files(1), "V2__broken.sql": "ALTER TABLE no_such_table ADD x int;"}
    kubetest.patch_migration(k8s, namespace, "shop-expand", {"spec": {"retry": {"limit": 0}}})
    bump_migration(k8s, namespace, broken, "2")
    bump_app(k8s, namespace)
    kubetest.wait_for_condition(k8s, namespace, "shop-expand", "Stalled", timeout=60)
    wait_for("new pods gated, old serving", lambda: new_pods_gated_old_serving(k8s, namespace))
    status = client.AppsV1Api(k8s).read_namespaced_deployment("web", namespace).status
    assert status.available_replicas == 2  # nobody noticed but the rollout
    assert status.updated_replicas == 1


def test_app_applied_before_the_migration_is_still_gated(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    start_on_version_1(k8s, namespace, pg_url)
    bump_app(k8s, namespace)  # git applied the Deployment first
    wait_for("new pods gated, old serving", lambda: new_pods_gated_old_serving(k8s, namespace))
    bump_migration(k8s, namespace, migration_files(1, 2), "2")
    kubetest.wait_for_condition(k8s, namespace, "shop-expand", "Ready", reason="Succeeded")
    wait_for("app v2 rolled out", lambda: rolled_out(k8s, namespace, 2), timeout=60)


def test_contract_runs_only_after_the_rollout_completes(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    start_on_version_1(k8s, namespace, pg_url)
    with lock_held(pg_url):
        bump_migration(k8s, namespace, migration_files(), "2")
        bump_app(k8s, namespace)
        wait_for("new pods gated", lambda: new_pods_gated_old_serving(k8s, namespace))
        (contract,) = documents("03-contract.yaml")
        kubetest.create_migration(k8s, namespace, contract)
        body = kubetest.wait_for_condition(
            k8s, namespace, "shop-contract", "Reconciling", reason="WaitingForRollout"
        )
        assert "Deployment web" in kubetest.condition(body, "Reconciling")["message"]  # type: ignore[index]
        assert kubetest.jobs_of(k8s, namespace, "shop-contract") == []
    kubetest.wait_for_condition(k8s, namespace, "shop-expand", "Ready", reason="Succeeded")
    body = kubetest.wait_for_condition(
        k8s, namespace, "shop-contract", "Ready", reason="Succeeded", timeout=120
    )
    assert rolled_out(k8s, namespace, 2)
    (job,) = kubetest.jobs_of(k8s, namespace, "shop-contract")
    finished = client.AppsV1Api(k8s).read_namespaced_deployment("web", namespace)
    assert finished.status.updated_replicas == 2
    assert body["status"]["appliedRevision"] == "3"
    assert column_names(pg_url, "customers") == {"id", "display_name"}
    assert job.status.start_time is not None


def test_the_webhook_answers_from_a_standby_replica(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    kubeconfig: Path,
    lease_namespace: str,
    tmp_path: Path,
    pg_url: str,
) -> None:
    standby = OperatorProcess(kubeconfig, tmp_path, lease_namespace, name="standby")
    standby.start()  # registers its own URL in the webhook configuration (development mode)
    try:
        assert not standby.is_leader()
        kubetest.create_secret(k8s, namespace, "shop-db", {"url": pg_url})
        kubetest.create_config_map(k8s, namespace, "shop-migrations", migration_files(1))
        with lock_held(pg_url):
            kubetest.create_migration(k8s, namespace, expand("1", 1))
            client.AppsV1Api(k8s).create_namespaced_deployment(namespace, deployment(1))
            wait_for("a gated pod", lambda: any(gated(p) for p in app_pods(k8s, namespace)))
        exported = standby.metrics()
        assert 'lockstep_gate_admissions_total{decision="gated"}' in exported, standby.log()
        assert "lockstep_leader 0.0" in standby.metrics()
        wait_for("app rolled out", lambda: rolled_out(k8s, namespace, 1), timeout=60)
    finally:
        standby.stop()
        operator.restart()  # its webhook URL is the registered one again
        operator.wait_leader()
