"""A git push reaches the database through the real Argo CD application controller.

Argo CD's application controller and repo-server (the `argocd` binary built from an Argo CD
source tree by tools/argocd/build.sh; ADR 0013 says why not from the module proxy) run against
the test cluster with a Redis from Debian (testbed.argocd). Lockstep's health check is loaded as
users load it, from argocd-cm. An Application syncs the loopback repository of the Flux tests
(testbed.gitserver, seeded by tests/support/fluxtest.py) with sync waves: the migration in wave
-1, the Deployment in wave 0. The tests check that Argo CD applies the Deployment only after the
DatabaseMigration is Healthy, that the Application goes (Missing ->) Progressing -> Healthy and
is Healthy only once the migration is Ready, and that a broken migration makes it Degraded with
Lockstep's message naming the broken file, and that a fix commit recovers.

Opt-in (marker `argocd`; `make test-argocd ARGOCD_SRC=<Argo CD source tree>` or
LOCKSTEP_E2E_ARGOCD=1): it needs an Argo CD source tree (none in CI) and a build of minutes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_flux import BROKEN_SQL, FIXED_SQL, app_pods, column_names, gated, tables

import argocdtest
import fluxtest
from dbtest import lock_held
from testbed import argocd as testbed_argocd
from testbed import kubetest
from testbed.gitserver import GitServer, Workspace
from testbed.operatorprocess import OperatorProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.argocd,
    pytest.mark.skipif(
        not os.environ.get("LOCKSTEP_E2E_ARGOCD"),
        reason="opt-in (make test-argocd ARGOCD_SRC=<Argo CD source tree>, or "
        "LOCKSTEP_E2E_ARGOCD=1): Argo CD is built from a source tree, which CI does not have",
    ),
]

TIMEOUT = 150.0


@pytest.fixture(scope="session")
def argocd_bin() -> Path:
    """The built `argocd`: from ARGOCD_SRC (built now or found current), else the cached one."""
    source = os.environ.get("ARGOCD_SRC")
    if source:
        if not (Path(source) / "cmd" / "main.go").is_file():
            pytest.skip(f"ARGOCD_SRC={source} is not an Argo CD source tree (no cmd/main.go)")
        return testbed_argocd.build(Path(source))
    if testbed_argocd.built_binary() is None:
        pytest.skip(
            "no Argo CD source tree (ARGOCD_SRC is unset) and no argocd binary built in "
            f"{testbed_argocd.BIN_DIR}: run make test-argocd ARGOCD_SRC=<Argo CD source tree>"
        )
    return testbed_argocd.BIN_DIR


@pytest.fixture(scope="session")
def argocd(
    argocd_bin: Path, kubeconfig: Path, kubectl: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[testbed_argocd.ArgoCD]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    kustomize = testbed_argocd.build_kustomize()
    state = tmp_path_factory.mktemp("argocd")
    with testbed_argocd.ArgoCD(argocd_bin, kustomize, kubeconfig, kubectl, state) as running:
        yield running


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


class Shop:
    """One test's repository, its Application, and a recorder of what Argo CD reported."""

    def __init__(
        self, api: client.ApiClient, namespace: str, work: Workspace, running: testbed_argocd.ArgoCD
    ) -> None:
        self.api, self.namespace, self.work, self.argocd = api, namespace, work, running
        self.name = namespace  # Applications live in `argocd`: one per test namespace
        # (time, Application health, DatabaseMigration Ready, sync operation phase, Deployment?)
        self.timeline: list[tuple[float, str, str, str, str]] = []
        self.last: dict[str, Any] = {}

    def start(self) -> None:
        body = argocdtest.application(self.name, self.work.url, self.namespace)
        argocdtest.create(self.api, body)

    def app(self) -> dict[str, Any]:
        body = argocdtest.get(self.api, self.name)
        dbm = self.migration()
        ready = (kubetest.condition(dbm, "Ready") or {}).get("status", "-") if dbm else "absent"
        phase = argocdtest.operation(body).get("phase", "")
        deployed = "deployment" if self.deployment() is not None else "no deployment"
        self.timeline.append(
            (time.monotonic(), argocdtest.health(body).get("status", ""), ready, phase, deployed)
        )
        return body

    def migration(self) -> dict[str, Any]:
        try:
            return kubetest.get_migration(self.api, self.namespace, "shop")
        except client.exceptions.ApiException as error:
            if error.status == 404:
                return {}
            raise

    def deployment(self) -> client.V1Deployment | None:
        found = client.AppsV1Api(self.api).list_namespaced_deployment(self.namespace).items
        return found[0] if found else None

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        return fluxtest.wait(what, probe, timeout, self.argocd.logs)

    def wait_synced(self, commit: str, health: str) -> dict[str, Any]:
        """Until the Application's last sync at `commit` finished and its health is `health`."""

        def done() -> dict[str, Any] | None:
            body = self.app()
            finished = argocdtest.operation(body).get("phase") in ("Succeeded", "Failed", "Error")
            at_commit = argocdtest.operation_revision(body) == commit
            synced = argocdtest.sync(body).get("status") == "Synced" or health != "Healthy"
            ok = (
                finished
                and at_commit
                and synced
                and argocdtest.health(body).get("status") == health
            )
            self.last = body
            return body if ok else None

        try:
            result: dict[str, Any] = self.wait(
                f"Application {health} after syncing {commit[:8]}", done
            )
        except AssertionError as error:
            status = self.last.get("status") or {}
            raise AssertionError(
                f"health {status.get('health')}, sync {status.get('sync')}, conditions "
                f"{status.get('conditions')}, operation {status.get('operationState')}\n{error}"
            ) from None
        return result

    def show(self, title: str, kubectl: Path, kubeconfig: Path) -> None:
        """Print what a user sees (pytest -s): the Application and what it synced."""
        apps = argocdtest.kubectl_get(kubectl, kubeconfig, "argocd", "applications", self.name)
        rest = argocdtest.kubectl_get(kubectl, kubeconfig, self.namespace, "dbm,deployments,pods")
        body = argocdtest.get(self.api, self.name)
        op = argocdtest.operation(body)
        results = [
            f"  {r.get('kind')}/{r.get('name')}: {r.get('status')} {r.get('hookPhase', '')} "
            f"{r.get('message', '')}"
            for r in (op.get("syncResult") or {}).get("resources") or []
        ]
        print(f"\n### {title}\n{apps}{rest}operation: {op.get('phase')}: {op.get('message')}")
        print("\n".join(results))


@pytest.fixture
def shop(
    argocd_bin: Path,  # first: without Argo CD, skip before a cluster starts
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    argocd: testbed_argocd.ArgoCD,
    git_server: GitServer,
) -> Iterator[Shop]:
    """A repository seeded with the example, the database Secret (not in git), no Application
    yet; the Application is deleted afterwards (its namespace goes with the test's)."""
    kubetest.create_secret(k8s, namespace, "shop-db", {"url": pg_url})
    work = git_server.create(namespace)
    fluxtest.seed(work)
    running = Shop(k8s, namespace, work, argocd)
    yield running
    argocdtest.delete(k8s, running.name)


def test_sync_waves_apply_the_deployment_only_after_the_migration_is_healthy(
    shop: Shop,
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    kubectl: Path,
    kubeconfig: Path,
) -> None:
    with lock_held(pg_url):  # the migration waits for the lock: every waiting step is visible
        commit = shop.work.commit_and_push("shop: schema v2 and the app that needs it")
        shop.start()
        body = shop.wait(
            "the sync running in wave -1: DatabaseMigration applied, Application Progressing",
            lambda: (
                (b := shop.app())
                and argocdtest.operation(b).get("phase") == "Running"
                and argocdtest.health(b).get("status") == "Progressing"
                and shop.migration()
                and b
            ),
        )
        time.sleep(5)  # a window in which Argo CD would apply wave 0 if it did not wait
        assert shop.deployment() is None, "Argo CD applied wave 0 before the migration was Ready"
        assert argocdtest.health(shop.app()).get("status") == "Progressing", body
        ready = kubetest.condition(shop.migration(), "Ready") or {}
        assert ready.get("status") != "True", ready
        shop.show("the lock is held: wave -1 applied, the Application waits", kubectl, kubeconfig)

    body = shop.wait_synced(commit, "Healthy")
    assert argocdtest.operation(body)["phase"] == "Succeeded", argocdtest.operation(body)
    assert argocdtest.sync(body).get("status") == "Synced", argocdtest.sync(body)
    dbm_ready = kubetest.condition(shop.migration(), "Ready") or {}
    assert dbm_ready.get("status") == "True", dbm_ready
    deployment = shop.deployment()
    assert deployment is not None
    created = deployment.metadata.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert dbm_ready["lastTransitionTime"] <= created, (dbm_ready, created)
    healthy_since = argocdtest.health(body)["lastTransitionTime"]
    assert dbm_ready["lastTransitionTime"] <= healthy_since, (dbm_ready, argocdtest.health(body))
    # What the controller reported while it ran: Missing (nothing applied yet), Progressing,
    # Healthy, and never Healthy while the DatabaseMigration was not Ready. (Between the waves
    # the Application can be Healthy for a moment while its sync still runs: the Deployment
    # does not exist yet, then it is Progressing until its pods are available.)
    seen = [(health, ready) for _, health, ready, _, _ in shop.timeline if health]
    states = [h for i, (h, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != h]
    assert states[0] in ("Missing", "Progressing") and states[-1] == "Healthy", seen
    assert set(states) <= {"Missing", "Progressing", "Healthy"}, seen
    assert states.index("Progressing") < states.index("Healthy"), seen
    assert all(ready == "True" for health, ready in seen if health == "Healthy"), seen
    assert all(r == "True" for _, _, r, _, d in shop.timeline if d == "deployment"), shop.timeline
    print(f"\nApplication health seen: {' -> '.join(states)}")
    assert {"customers", "orders"} <= tables(pg_url)
    pods = app_pods(k8s, namespace)
    assert len(pods) == 2 and not any(gated(p) for p in pods)
    shop.show(
        "the migration succeeded: wave 0 applied, the Application Healthy", kubectl, kubeconfig
    )


def push_broken_v3(
    shop: Shop, k8s: client.ApiClient, namespace: str
) -> tuple[dict[str, Any], set[str]]:
    """First release (Healthy), then a commit with a broken V3 and the app's new image: the
    Application once its sync of that commit failed (Degraded), and the first release's pods."""
    first = shop.work.commit_and_push("shop: first release")
    shop.start()
    shop.wait_synced(first, "Healthy")
    old_pods = {p.metadata.name for p in app_pods(k8s, namespace)}
    assert len(old_pods) == 2
    fluxtest.add_sql(shop.work, "V3__order_notes.sql", BROKEN_SQL)
    fluxtest.set_app_tag(shop.work, "1.5.0")
    broken = shop.work.commit_and_push("shop: order notes (broken V3)")
    return shop.wait_synced(broken, "Degraded"), old_pods


def test_a_failing_migration_degrades_the_application_with_lockstep_message(
    shop: Shop,
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    kubectl: Path,
    kubeconfig: Path,
) -> None:
    body, old_pods = push_broken_v3(shop, k8s, namespace)
    operation = argocdtest.operation(body)
    assert operation["phase"] == "Failed", operation
    assert "one or more synchronization tasks completed unsuccessfully" in operation["message"]
    (result,) = argocdtest.sync_result(body, "DatabaseMigration")
    assert result.get("hookPhase") == "Failed", result
    stalled = kubetest.condition(shop.migration(), "Stalled") or {}
    assert stalled.get("status") == "True", shop.migration().get("status")
    # Lockstep's message, word for word, is what Argo CD reports for the resource (health.lua
    # passes the Stalled condition's message), and the Application names the resource.
    assert result.get("message") == stalled["message"], (result, stalled)
    assert stalled["reason"] == "RetriesExhausted", stalled
    health = argocdtest.health(body)
    assert health.get("message") == f"Caused by lockstep.dev/DatabaseMigration:{namespace}/shop"
    shop.show("a broken V3: the Application is Degraded, wave 0 not applied", kubectl, kubeconfig)

    # Wave 0 was not applied: the Deployment still names the old image, the old pods serve.
    assert argocdtest.sync_result(body, "Deployment") == [], operation
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment("shop", namespace)
    assert deployment.spec.template.spec.containers[0].image == f"{fluxtest.PAUSE}:1.4.2"
    assert {p.metadata.name for p in app_pods(k8s, namespace)} == old_pods
    assert "note" not in column_names(pg_url, "orders")


def test_the_failure_is_the_broken_file_and_a_fix_commit_recovers(
    shop: Shop,
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    kubectl: Path,
    kubeconfig: Path,
) -> None:
    body, _ = push_broken_v3(shop, k8s, namespace)
    (result,) = argocdtest.sync_result(body, "DatabaseMigration")
    assert "V3__order_notes.sql" in result.get("message", ""), result
    assert "no_such_table" in result.get("message", ""), result

    fluxtest.add_sql(shop.work, "V3__order_notes.sql", FIXED_SQL)
    fixed = shop.work.commit_and_push("shop: fix V3")
    shop.wait_synced(fixed, "Healthy")
    assert "note" in column_names(pg_url, "orders")
    shop.wait(
        "the new image rolled out",
        lambda: (
            {p.spec.containers[0].image for p in app_pods(k8s, namespace)}
            == {f"{fluxtest.PAUSE}:1.5.0"}
        ),
    )
    shop.show("the fix commit: migrated, then wave 0 rolled out the new image", kubectl, kubeconfig)
