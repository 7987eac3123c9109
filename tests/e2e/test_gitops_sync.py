"""examples/gitops against a real cluster and operator, synced the way the GitOps tools do it:
the real kustomize (in kubectl) renders the paths; wave -1 is applied and polled with Argo CD's
health check (health.lua) and Flux's kstatus until it is done; only then is wave 0 applied."""

from __future__ import annotations

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
    config_map = k8s.sanitize_for_serialization(
        client.CoreV1Api(k8s).read_namespaced_config_map("shop-migrations", namespace)
    )
    (verdict,) = alerting.kstatus_verdicts(checker, [{"kind": "ConfigMap", **config_map}])
    assert verdict["status"] == "Current"

    # Wave 0: the Deployment is valid for the API server (not run: no image on this cluster).
    out = kubectl_apply(kubectl, kubeconfig, namespace, waves[0], "--dry-run=server")
    assert "deployment.apps/shop created (server dry run)" in out
