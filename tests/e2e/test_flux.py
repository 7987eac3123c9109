"""A git push reaches the database through the real Flux controllers.

source-controller and kustomize-controller (built from their Go modules by tools/k8s/build.sh)
run against the test cluster and pull a repository served over smart HTTP on loopback
(testbed.gitserver); the tests push commits to it as a user would and check what Flux and
Lockstep do: the migration runs before the app rolls out, a failing migration fails the
Kustomization early (Flux names the DatabaseMigration; Lockstep's message is on it) and nothing
of the app rolls out, a forbidden downgrade is refused and visible in Flux.
The repository is examples/gitops (tests/support/fluxtest.py says what is added to it).

Opt-in (marker `flux`; `make test-flux` or LOCKSTEP_E2E_FLUX=1): the first run builds both
controllers from Go modules, about 16 min on two busy cores (tools/k8s/build.sh; then cached,
0.1 s), which would push CI's cold run past its 60 min budget; the four tests take about
3 min on a warm cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kubernetes import client

import fluxtest
from dbtest import lock_held
from testbed import flux as testbed_flux
from testbed import kubetest
from testbed.gitserver import GitServer, Workspace
from testbed.operatorprocess import OperatorProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.flux,
    pytest.mark.skipif(
        not os.environ.get("LOCKSTEP_E2E_FLUX"),
        reason="opt-in (make test-flux, or LOCKSTEP_E2E_FLUX=1): the first run builds Flux's "
        "controllers from Go modules (about 16 min cold on 2 cores), too long for CI's budget",
    ),
]

GATE = "lockstep.dev/migration"
FLUX_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def flux(
    kubeconfig: Path, kubectl: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[testbed_flux.Flux]:
    bin_dir = testbed_flux.build()
    testbed_flux.install_crds(kubectl, kubeconfig)
    with testbed_flux.Flux(bin_dir, kubeconfig, tmp_path_factory.mktemp("flux")) as running:
        yield running


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


class Fleet:
    """One test's repository, its Flux objects and what the user would look at."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        work: Workspace,
        running: testbed_flux.Flux,
        kubectl: Path,
        kubeconfig: Path,
    ) -> None:
        self.api, self.namespace, self.work, self.flux = api, namespace, work, running
        self.kubectl, self.kubeconfig = kubectl, kubeconfig

    def start_together(self) -> None:
        """`shop` (migration and app, wait) and `shop-after` (dependsOn shop)."""
        ns = self.namespace
        fluxtest.create(self.api, fluxtest.git_repository(ns, self.work.url))
        fluxtest.create(self.api, fluxtest.kustomization(ns, "shop", "./deploy/together"))
        fluxtest.create(self.api, fluxtest.kustomization(ns, "shop-after", "./after", "shop"))

    def start_apart(self) -> None:
        """As examples/gitops/flux: `shop-migration` (wait), `shop-app` (dependsOn it)."""
        ns = self.namespace
        fluxtest.create(self.api, fluxtest.git_repository(ns, self.work.url))
        migration = fluxtest.kustomization(ns, "shop-migration", "./deploy/migration")
        fluxtest.create(self.api, migration)
        app = fluxtest.kustomization(ns, "shop-app", "./deploy/app", "shop-migration")
        fluxtest.create(self.api, app)

    def kustomization(self, name: str) -> dict[str, Any]:
        return fluxtest.get(self.api, self.namespace, "Kustomization", name)

    def ready(self, name: str) -> dict[str, Any]:
        return fluxtest.ready(self.kustomization(name))

    def wait(self, what: str, probe: Any, timeout: float = FLUX_TIMEOUT) -> Any:
        return fluxtest.wait(what, probe, timeout, self.flux.logs)

    def wait_applied(self, name: str, commit: str) -> dict[str, Any]:
        """Until Kustomization `name` is Ready=True at `commit`."""

        def done() -> dict[str, Any] | None:
            body = self.kustomization(name)
            ok = fluxtest.ready(body).get("status") == "True"
            return body if ok and fluxtest.applied_revision(body).endswith(commit) else None

        result: dict[str, Any] = self.wait(f"Kustomization {name} Ready at {commit[:8]}", done)
        return result

    def show(self, title: str) -> None:
        """Print what `kubectl get` shows now (pytest -s); docs/gitops.md quotes it."""
        table = fluxtest.kubectl_get(
            self.kubectl, self.kubeconfig, self.namespace, "gitrepositories,kustomizations,dbm"
        )
        pods = fluxtest.kubectl_get(self.kubectl, self.kubeconfig, self.namespace, "pods")
        print(f"\n### {title}\n{table}{pods}")


@pytest.fixture
def fleet(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    flux: testbed_flux.Flux,
    git_server: GitServer,
    kubectl: Path,
    kubeconfig: Path,
) -> Fleet:
    """A repository seeded with the example, the database Secret (not in git), no Flux yet."""
    kubetest.create_secret(k8s, namespace, "shop-db", {"url": pg_url})
    work = git_server.create(namespace)
    fluxtest.seed(work)
    return Fleet(k8s, namespace, work, flux, kubectl, kubeconfig)


def app_pods(api: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="lockstep.dev/wait-for=shop"
    )
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def gated(pod: client.V1Pod) -> bool:
    return any(g.name == GATE for g in pod.spec.scheduling_gates or [])


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def smoke_test_exists(api: client.ApiClient, namespace: str) -> bool:
    names = client.CoreV1Api(api).list_namespaced_config_map(namespace).items
    return any(c.metadata.name == "shop-smoke-test" for c in names)


def test_a_push_migrates_first_then_rolls_out_then_the_dependent_follows(
    fleet: Fleet, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    with lock_held(pg_url):  # keeps the migration waiting, so every waiting step can be seen
        commit = fleet.work.commit_and_push("shop: schema v2 and the app that needs it")
        fleet.start_together()
        pods = fleet.wait(
            "the app's pods, all held at the rollout gate",
            lambda: (ps := app_pods(k8s, namespace)) and all(gated(p) for p in ps) and ps,
        )
        assert len(pods) == 2
        dbm = kubetest.get_migration(k8s, namespace, "shop")
        assert (kubetest.condition(dbm, "Ready") or {}).get("status") != "True"
        shop = fleet.wait(
            "shop health-checking (Ready=Unknown)",
            lambda: fleet.ready("shop").get("status") == "Unknown" and fleet.ready("shop"),
        )
        assert shop["reason"] == "Progressing", shop
        after = fleet.wait(
            "shop-after waiting for its dependency",
            lambda: (
                fleet.ready("shop-after").get("reason") == "DependencyNotReady"
                and fleet.ready("shop-after")
            ),
        )
        assert after["status"] == "False", after
        assert not smoke_test_exists(k8s, namespace)
        fleet.show("the lock is held: the migration waits, so do the pods and both Kustomizations")

    shop_body = fleet.wait_applied("shop", commit)
    dbm = kubetest.get_migration(k8s, namespace, "shop")
    dbm_ready = kubetest.condition(dbm, "Ready") or {}
    assert dbm_ready.get("status") == "True", dbm_ready
    shop_ready = fluxtest.ready(shop_body)
    assert dbm_ready["lastTransitionTime"] <= shop_ready["lastTransitionTime"], (dbm, shop_body)
    assert {"customers", "orders"} <= tables(pg_url)
    released = app_pods(k8s, namespace)
    assert released and not any(gated(p) for p in released)

    after_body = fleet.wait_applied("shop-after", commit)
    after_ready = fluxtest.ready(after_body)
    assert shop_ready["lastTransitionTime"] <= after_ready["lastTransitionTime"]
    assert smoke_test_exists(k8s, namespace)
    fleet.show("the migration succeeded: the app rolled out, then shop-after was applied")


BROKEN_SQL = "ALTER TABLE orders ADD COLUMN note TEXT;\nALTER TABLE no_such_table ADD x INT;\n"
FIXED_SQL = "ALTER TABLE orders ADD COLUMN note TEXT;\n"


def test_a_failing_migration_fails_the_kustomization_early_and_a_fix_recovers(
    fleet: Fleet, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    first = fleet.work.commit_and_push("shop: first release")
    fleet.start_apart()
    fleet.wait_applied("shop-app", first)
    old_pods = {p.metadata.name for p in app_pods(k8s, namespace)}
    assert len(old_pods) == 2

    fluxtest.add_sql(fleet.work, "V3__order_notes.sql", BROKEN_SQL)
    fluxtest.set_app_tag(fleet.work, "1.5.0")
    broken = fleet.work.commit_and_push("shop: order notes (broken V3)")

    def failed() -> dict[str, Any] | None:
        condition = fleet.ready("shop-migration")
        return condition if condition.get("status") == "False" else None

    shop = fleet.wait("shop failed", failed)
    assert_failed_early(shop, namespace)
    # Flux names the resource; Lockstep's message is on it (Stalled, and Ready=False).
    dbm = kubetest.get_migration(k8s, namespace, "shop")
    stalled = kubetest.condition(dbm, "Stalled") or {}
    assert stalled.get("status") == "True", dbm.get("status")
    assert "no_such_table" in stalled["message"], stalled
    fleet.show("a broken V3: shop-migration fails early, shop-app waits at the old commit")

    # Nothing of the app rolled out: shop-app waits for its dependency at the last good commit,
    # the Deployment still names the old image and the old pods serve.
    app = fleet.kustomization("shop-app")
    assert fluxtest.applied_revision(app).endswith(first)
    assert fluxtest.ready(app)["reason"] == "DependencyNotReady", fluxtest.ready(app)
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment("shop", namespace)
    assert deployment.spec.template.spec.containers[0].image == f"{fluxtest.PAUSE}:1.4.2"
    assert {p.metadata.name for p in app_pods(k8s, namespace)} == old_pods
    assert "note" not in column_names(pg_url, "orders")

    fluxtest.add_sql(fleet.work, "V3__order_notes.sql", FIXED_SQL)
    fixed = fleet.work.commit_and_push("shop: fix V3")
    fleet.wait_applied("shop-migration", fixed)
    fleet.wait_applied("shop-app", fixed)
    assert "note" in column_names(pg_url, "orders")
    images = {p.spec.containers[0].image for p in app_pods(k8s, namespace)}
    assert images == {f"{fluxtest.PAUSE}:1.5.0"}, images
    fleet.show("the fix commit: migrated, then shop-app rolled out the new image")
    assert broken != fixed


def test_in_one_kustomization_a_failing_update_leaves_every_new_pod_at_the_gate(
    fleet: Fleet, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    """Migration and app in one Kustomization: kustomize-controller applies the
    DatabaseMigration first (--custom-apply-stage-kinds, testbed.flux), so the new pods find it
    at a new generation and wait; with a broken V3 they never start."""
    first = fleet.work.commit_and_push("shop: first release")
    fleet.start_together()
    fleet.wait_applied("shop-after", first)
    old_pods = {p.metadata.name for p in app_pods(k8s, namespace)}

    fluxtest.add_sql(fleet.work, "V3__order_notes.sql", BROKEN_SQL)
    fluxtest.set_app_tag(fleet.work, "1.5.0")
    fleet.work.commit_and_push("shop: order notes (broken V3)")
    shop = fleet.wait(
        "shop failed",
        lambda: fleet.ready("shop").get("status") == "False" and fleet.ready("shop"),
    )
    assert_failed_early(shop, namespace)
    pods = app_pods(k8s, namespace)
    new = [p for p in pods if p.spec.containers[0].image.endswith(":1.5.0")]
    assert new and all(gated(p) and not p.spec.node_name for p in new), new
    assert old_pods <= {p.metadata.name for p in pods}
    fleet.show("one Kustomization, broken V3: the new pod waits at the gate, the old ones serve")


def test_lowering_the_target_without_downgrade_allow_is_refused_and_visible_in_flux(
    fleet: Fleet, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    first = fleet.work.commit_and_push("shop: first release")
    fleet.start_apart()
    fleet.wait_applied("shop-migration", first)
    dbm = kubetest.get_migration(k8s, namespace, "shop")
    assert dbm["status"]["appliedRevision"] == "2"

    fluxtest.set_target(fleet.work, "1")
    fleet.work.commit_and_push("shop: back to schema 1")

    def refused() -> dict[str, Any] | None:
        condition = fleet.ready("shop-migration")
        return condition if condition.get("status") == "False" else None

    shop = fleet.wait("shop refused", refused)
    assert_failed_early(shop, namespace)
    dbm = kubetest.get_migration(k8s, namespace, "shop")
    stalled = kubetest.condition(dbm, "Stalled") or {}
    assert stalled.get("reason") == "DowngradeForbidden", stalled
    assert "spec.downgrade: Allow" in stalled["message"], stalled
    assert dbm["status"]["appliedRevision"] == "2"
    assert "orders" in tables(pg_url)
    fleet.show("target lowered without downgrade: Allow: refused")


def assert_failed_early(ready: dict[str, Any], namespace: str) -> None:
    """kustomize-controller stops its health check as soon as kstatus says Failed (Lockstep's
    Stalled=True): the Kustomization names the DatabaseMigration, well before its 3 minute
    timeout. Flux v1.9 prints only the object and its kstatus verdict, not the object's message
    (fluxcd/pkg/ssa WaitForSet); Lockstep's message is on the DatabaseMigration."""
    assert ready["reason"] == "HealthCheckFailed", ready
    expected = f"failed early due to stalled resources: [DatabaseMigration/{namespace}/shop"
    assert expected in ready["message"], ready
    assert "status: 'Failed'" in ready["message"], ready


def column_names(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()
