"""The Argo CD Application the e2e tests create, and how they read what Argo CD reports.

The Application is examples/gitops/argocd/application.yaml pointed at the loopback repository
(tests/support/fluxtest.py seeds it: the example's `migration/` and `app/` folders plus the
test-bed overlays). Its path is `deploy/together`, which holds both, as the example's
`argocd/shop` does: the migration in sync wave -1 (the example's commonAnnotations), the
Deployment in wave 0. `spec.source.kustomize.namespace` puts everything into the test's
namespace (the repo-server runs `kustomize edit set namespace`, as for any user who sets it).
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed.kubetest import REPO, get_custom_object_or_empty

EXAMPLE = REPO / "examples" / "gitops" / "argocd" / "application.yaml"
GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
ARGOCD_NAMESPACE = "argocd"
PATH = "deploy/together"


def application(name: str, repo_url: str, namespace: str) -> dict[str, Any]:
    """The example Application, with the test's repository, path and namespace."""
    body: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    body["metadata"] = {"name": name, "namespace": ARGOCD_NAMESPACE}
    body["spec"]["source"].update(
        {
            "repoURL": repo_url,
            "targetRevision": "main",
            "path": PATH,
            "kustomize": {"namespace": namespace},
        }
    )
    body["spec"]["destination"]["namespace"] = namespace
    # No retries: the example retries a failed sync 5 times with a 30 s backoff (an automated
    # sync without `retry` also retries 5 times, Argo CD's default since v3.6), and while that
    # operation runs on the broken commit, Argo CD starts no sync of a newer one. The tests
    # check the first failure and then push the fix.
    body["spec"]["syncPolicy"]["retry"] = {"limit": 0}
    return body


def create(api: client.ApiClient, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ARGOCD_NAMESPACE, PLURAL, body
    )


def delete(api: client.ApiClient, name: str) -> None:
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, ARGOCD_NAMESPACE, PLURAL, name
        )
    except ApiException as error:
        if error.status != 404:
            raise


def get(api: client.ApiClient, name: str) -> dict[str, Any]:
    return get_custom_object_or_empty(api, GROUP, VERSION, ARGOCD_NAMESPACE, PLURAL, name)


def health(body: dict[str, Any]) -> dict[str, Any]:
    """status.health: {status, lastTransitionTime} ({} before the first reconcile)."""
    return dict((body.get("status") or {}).get("health") or {})


def sync(body: dict[str, Any]) -> dict[str, Any]:
    """status.sync: {status: Synced|OutOfSync, revision}."""
    return dict((body.get("status") or {}).get("sync") or {})


def operation(body: dict[str, Any]) -> dict[str, Any]:
    """status.operationState: the last sync's phase, message, per-resource results."""
    return dict((body.get("status") or {}).get("operationState") or {})


def operation_revision(body: dict[str, Any]) -> str:
    return str(((operation(body).get("syncResult") or {}).get("revision")) or "")


def sync_result(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The last sync's results for resources of `kind` (one per apply, in the order applied)."""
    results = (operation(body).get("syncResult") or {}).get("resources") or []
    return [dict(r) for r in results if r.get("kind") == kind]


def kubectl_get(kubectl: Path, kubeconfig: Path, namespace: str, *what: str) -> str:
    """What a user sees with `kubectl get` (docs/gitops.md quotes it)."""
    return subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", *what],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
