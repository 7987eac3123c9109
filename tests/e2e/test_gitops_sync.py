"""examples/gitops against a real cluster and operator, synced the way the GitOps tools do it:
the real kustomize (in kubectl) renders the paths; wave -1 is applied and polled with Argo CD's
health check (health.lua) and Flux's kstatus until it is done; only then is wave 0 applied."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from kubernetes import client

import alerting
import argocd_health
from status_recorder import Recorder
from testbed import kubetest
from testbed.kubetest import REPO
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

GITOPS = REPO / "examples" / "gitops"
WAVE = "argocd.argoproj.io/sync-wave"


def kustomize(kubectl: Path, path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(kubectl), "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kubectl_apply(
    kubectl: Path, kubeconfig: Path, namespace: str, docs: list[dict[str, Any]], *extra: str
) -> str:
    result = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            "apply",
            *extra,
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_flux_paths_build_with_the_real_kustomize(kubectl: Path) -> None:
    for name in ("migration", "app"):
        flux = yaml.safe_load((GITOPS / "flux" / f"{name}.yaml").read_text())
        docs = kustomize(kubectl, REPO / flux["spec"]["path"])
        assert docs and all(d["metadata"]["namespace"] == "shop" for d in docs)


def test_argocd_waves_migrate_first_then_roll_out(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    kubectl: Path,
    kubeconfig: Path,
) -> None:
    application = yaml.safe_load((GITOPS / "argocd" / "application.yaml").read_text())
    docs = kustomize(kubectl, REPO / application["spec"]["source"]["path"])
    for doc in docs:
        doc["metadata"]["namespace"] = namespace  # the test's, instead of `shop`
    waves: dict[int, list[dict[str, Any]]] = {}
    for doc in docs:
        waves.setdefault(int(doc["metadata"]["annotations"][WAVE]), []).append(doc)
    assert sorted(waves) == [-1, 0]
    kubetest.create_secret(k8s, namespace, "shop-db", {"url": pg_url})

    # Wave -1: apply, then wait as Argo CD (health.lua) and Flux (kstatus) would.
    kubectl_apply(kubectl, kubeconfig, namespace, waves[-1])
    checker = alerting.kstatus()
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dbm = kubetest.get_migration(k8s, namespace, "shop")
        health = argocd_health.evaluate(dbm)["status"]
        (verdict,) = alerting.kstatus_verdicts(checker, [dbm])
        if not seen or seen[-1] != (health, verdict["status"]):
            seen.append((health, verdict["status"]))
        if health == "Healthy":
            break
        assert health == "Progressing", seen
        time.sleep(0.2)
    assert seen[-1] == ("Healthy", "Current"), seen
    assert ("Progressing", "InProgress") in seen, f"the wave never had to wait: {seen}"
    # Wave 0 may start now: the schema is there.
    assert {"customers", "orders"} <= tables(pg_url)

    # The rest of the wave is done too (what Flux's `wait` checks on every object it applied).
    name = dbm["spec"]["source"]["configMapRef"]["name"]  # shop-migrations-<hash of the SQL>
    assert name.startswith("shop-migrations-"), name
    config_map = k8s.sanitize_for_serialization(
        client.CoreV1Api(k8s).read_namespaced_config_map(name, namespace)
    )
    (verdict,) = alerting.kstatus_verdicts(checker, [{"kind": "ConfigMap", **config_map}])
    assert verdict["status"] == "Current"

    # Wave 0: the Deployment is valid for the API server (not run: no image on this cluster).
    out = kubectl_apply(kubectl, kubeconfig, namespace, waves[0], "--dry-run=server")
    assert "deployment.apps/shop created (server dry run)" in out


def test_a_secret_created_after_the_migration_is_waited_for_never_stalled(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    """ExternalSecrets, sealed secrets or a later sync wave create the Secret after the
    DatabaseMigration: Argo CD must show Progressing (not Degraded) and Flux keep waiting (not
    fail), then the migration runs. Every status version is recorded, and judged by both."""
    kubetest.create_config_map(k8s, namespace, "late", {"V1__a.sql": "CREATE TABLE a (id int);"})
    checker = alerting.kstatus()
    with Recorder(k8s, namespace) as recorder:
        kubetest.create_migration(k8s, namespace, kubetest.sql_migration("late", "late", "late-db"))
        kubetest.wait_for_condition(k8s, namespace, "late", "Reconciling", reason="SecretNotFound")
        time.sleep(30)
        kubetest.create_secret(k8s, namespace, "late-db", {"url": pg_url})
        kubetest.wait_for_condition(k8s, namespace, "late", "Ready", reason="Succeeded", timeout=60)
        versions = recorder.versions("late")
    stalled = [v for v in versions if kubetest.condition(v, "Stalled")]
    assert stalled == [], "Stalled was set while the Secret was only late"
    waiting = [v for v in versions if ready_reason_of(v) == "SecretNotFound"]
    assert waiting, "the wait for the Secret was never reported"
    assert {argocd_health.evaluate(v)["status"] for v in waiting} == {"Progressing"}
    verdicts = alerting.kstatus_verdicts(checker, waiting)
    assert {v["status"] for v in verdicts} == {"InProgress"}, verdicts
    assert "a" in tables(pg_url)


def ready_reason_of(body: dict[str, Any]) -> str | None:
    ready = kubetest.condition(body, "Ready")
    return None if ready is None else str(ready.get("reason"))


HEALTH_LUA = REPO / "charts/lockstep/files/argocd/lockstep.dev/DatabaseMigration/health.lua"
HEALTH_COMPONENT = REPO / "deploy" / "argocd-health"
HEALTH_KEY = "resource.customizations.health.lockstep.dev_DatabaseMigration"


def test_the_argocd_health_component_merges_into_an_existing_argocd_cm(
    kubectl: Path, tmp_path: Path
) -> None:
    """A user's Argo CD kustomization includes deploy/argocd-health: argocd-cm gains the check
    and keeps its own keys. The real kustomize (in kubectl) renders it."""
    (tmp_path / "base").mkdir()
    argocd_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd"},
        "data": {"url": "https://argocd.example.com"},
    }
    (tmp_path / "base" / "argocd-cm.yaml").write_text(yaml.safe_dump(argocd_cm))
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [argocd-cm.yaml]\n")
    # kustomize takes a component's path relative to the overlay only.
    component = os.path.relpath(HEALTH_COMPONENT, tmp_path)
    overlay = {"resources": ["base"], "components": [component]}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    (rendered,) = kustomize(kubectl, tmp_path)
    assert rendered["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert rendered["data"]["url"] == "https://argocd.example.com"
    assert rendered["data"][HEALTH_KEY] == HEALTH_LUA.read_text()


def test_the_argocd_health_component_carries_the_charts_health_check() -> None:
    assert (HEALTH_COMPONENT / "health.lua").read_text() == HEALTH_LUA.read_text(), (
        "cp charts/lockstep/files/argocd/lockstep.dev/DatabaseMigration/health.lua "
        "deploy/argocd-health/"
    )
