"""The fleet repository the Flux e2e tests push, and how they read what Flux reports.

The repository carries examples/gitops as a user would commit it (the same `migration/` and
`app/` folders, read from the examples at test time), plus:

- `deploy/migration`, `deploy/app`: the example's folders with two test-bed changes: the app's
  image becomes the pause image (the pod agent runs pods as host processes;
  tools/testbed/images.yaml) and the retry budget drops to 0, so a failing migration stalls in
  seconds, not after 3 x 30 s. Synced by two Kustomizations as in examples/gitops/flux:
  `shop-migration` (`wait: true`) and `shop-app` (`dependsOn: shop-migration`).
- `deploy/together`: both in one Kustomization, so the app's pods exist while the first
  migration runs and wait at Lockstep's rollout gate; `after/` (a smoke-test ConfigMap) is what
  `dependsOn` it.

The Flux objects themselves (GitRepository, two Kustomizations) are created by the test in its
own namespace, the way `flux create source git` / `flux create kustomization` would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from testbed.gitserver import Workspace
from testbed.kubetest import REPO, get_custom_object_or_empty

EXAMPLE = REPO / "examples" / "gitops"
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
APP_IMAGE = "ghcr.io/acme/shop"
PAUSE = "registry.k8s.io/pause"

# deploy/migration and deploy/app: the example's two folders as the test bed runs them.
MIGRATION_OVERLAY = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": ["../../migration"],
    "patches": [
        {
            "target": {"kind": "DatabaseMigration", "name": "shop"},
            "patch": yaml.safe_dump(
                [{"op": "replace", "path": "/spec/retry", "value": {"limit": 0}}]
            ),
        }
    ],
}
APP_OVERLAY = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": ["../../app"],
    "images": [{"name": APP_IMAGE, "newName": PAUSE}],
}
# deploy/together: migration and app in one Kustomization (new pods wait at the gate).
TOGETHER = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": ["../migration", "../app"],
}
SMOKE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "shop-smoke-test"},
    "data": {"check": "SELECT count(*) FROM orders"},
}


def seed(work: Workspace) -> None:
    """The first commit's tree: the example's folders, `deploy/` and `after/`."""
    for folder in ("migration", "app"):
        for path in sorted((EXAMPLE / folder).rglob("*")):
            if path.is_file():
                work.write(str(path.relative_to(EXAMPLE)), path.read_text())
    for folder, body in (
        ("migration", MIGRATION_OVERLAY),
        ("app", APP_OVERLAY),
        ("together", TOGETHER),
    ):
        work.write(f"deploy/{folder}/kustomization.yaml", yaml.safe_dump(body, sort_keys=False))
    work.write("after/kustomization.yaml", yaml.safe_dump({"resources": ["smoke.yaml"]}))
    work.write("after/smoke.yaml", yaml.safe_dump(SMOKE, sort_keys=False))


def add_sql(work: Workspace, name: str, sql: str) -> None:
    """A new migration file, listed in the ConfigMap generator as the example's README says."""
    work.write(f"migration/sql/{name}", sql)
    path = work.path / "migration" / "kustomization.yaml"
    text = path.read_text()
    last = "      - sql/V2__create_orders.sql\n"
    if f"sql/{name}" not in text:
        path.write_text(text.replace(last, f"{last}      - sql/{name}\n"))


def set_app_tag(work: Workspace, tag: str) -> None:
    path = work.path / "app" / "deployment.yaml"
    path.write_text(path.read_text().replace(f"{APP_IMAGE}:1.4.2", f"{APP_IMAGE}:{tag}"))


def set_target(work: Workspace, target: str) -> None:
    path = work.path / "migration" / "migration.yaml"
    body = yaml.safe_load(path.read_text())
    body["spec"]["target"] = target
    path.write_text(yaml.safe_dump(body, sort_keys=False))


def git_repository(namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": namespace},
        "spec": {"interval": "5s", "url": url, "ref": {"branch": "main"}, "timeout": "20s"},
    }


def kustomization(
    namespace: str, name: str, path: str, depends_on: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "1m",
        "retryInterval": "3s",
        "path": path,
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "fleet"},
        "targetNamespace": namespace,
        "wait": True,
        "timeout": "3m",
    }
    if depends_on:
        spec["dependsOn"] = [{"name": depends_on}]
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def create(api: client.ApiClient, body: dict[str, Any]) -> None:
    group, version, plural = SOURCE if body["kind"] == "GitRepository" else KUSTOMIZATION
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, body["metadata"]["namespace"], plural, body
    )


def get(api: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    group, version, plural = SOURCE if kind == "GitRepository" else KUSTOMIZATION
    return get_custom_object_or_empty(api, group, version, namespace, plural, name)


def ready(body: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition ({} while there is none)."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def applied_revision(body: dict[str, Any]) -> str:
    return str((body.get("status") or {}).get("lastAppliedRevision") or "")


def wait(what: str, probe: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    """Poll `probe` until it returns something truthy; on timeout, say what Flux logged."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{logs()}")


def kubectl_get(kubectl: Path, kubeconfig: Path, namespace: str, *what: str) -> str:
    """What a user sees: `kubectl get` output, the table Flux's CRDs print (docs/gitops.md)."""
    return subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", *what],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
