"""The Helm chart, installed with `helm install` into the test control plane.

The operator then runs as the chart's pods under the chart's ServiceAccount (in-cluster config,
its own projected token, never the admin kubeconfig), and must: pass a server-side dry run of
every values file, keep DatabaseMigrations across `helm upgrade` from the first committed chart,
run the quickstart migration, hold and release a gated rollout, survive the loss of its leader
pod, and never be refused a request (any 403 in an operator pod's log fails the test).

The session's own operator process is stopped while the chart's operator runs (two leaders of
two installs must never reconcile the same objects) and restarted at the end.

Test bed only (no kube-proxy, loopback pod IPs): the API server cannot reach a webhook behind a
Service, so the webhook's clientConfig is pointed at `https://localhost:<port>`, where a test
forwarder (tcpforward) plays kube-proxy for the chart's Service. The TLS certificate is still
the operator's own and covers `localhost`. Pods bind their own IP (`listenOnPodIP`) because all
pods share the host's network here. On a `KUBECONFIG` cluster the Service is used as it is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import charttest
from dbtest import column_names, lock_held
from e2e_databases import extra_database
from expand_contract import (
    APP,
    app_pods,
    deployment,
    expand,
    gated,
    migration_files,
    new_pods_gated_old_serving,
    ready,
    rolled_out,
)
from tcpforward import TcpForwarder
from testbed import kubetest
from testbed.kubetest import REPO, wait_for
from testbed.localhost import free_port
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

RELEASE = "lockstep-e2e"  # the full name too: every object is named after it
SERVICE_ACCOUNT = RELEASE
GATE_CONFIGURATION = f"{RELEASE}-gate"
LEASE = f"{RELEASE}-leader"
SESSION_GATE_CONFIGURATION = "lockstep-gate"  # registered by the session operator (URL mode)
CRD_NAME = "databasemigrations.lockstep.dev"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
FORBIDDEN = re.compile(r"\b403\b|\bforbidden\b|not enough permissions", re.IGNORECASE)
TIMESTAMP = re.compile(r'"time": "[^"]*"|\b\d{4}-\d\d-\d\d[T ][\d:.,]+(?:Z|[+-]\d\d:?\d\d)?')
FOREIGN_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")
QUICKSTART = REPO / "examples" / "quickstart" / "migration.yaml"
E2E_LABEL = "lockstep.dev/e2e"  # as in conftest: the session waits for these namespaces to go


# --- the installed chart ---------------------------------------------------------------------


@dataclass
class ChartInstall:
    kubeconfig: Path
    api: client.ApiClient
    namespace: str
    values: dict[str, Any]
    local: bool
    notes: str = ""
    logs: dict[str, str] = field(default_factory=dict)
    forwarder: TcpForwarder | None = None
    installed: bool = False
    upgrade: dict[str, Any] = field(default_factory=dict)

    def helm(self, *args: str) -> str:
        return charttest.run_helm(*args, kubeconfig=self.kubeconfig)

    def install_or_upgrade(self, verb: str, chart: Path, **overrides: Any) -> str:
        values = charttest.values_args(values={**self.values, **overrides})
        output = self.helm(
            verb, RELEASE, str(chart), "--namespace", self.namespace, "--wait",
            "--timeout", "3m", *values,
        )  # fmt: skip
        self.installed = True
        return output

    def pods(self) -> list[client.V1Pod]:
        core = client.CoreV1Api(self.api)
        return list(core.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items)

    def ready_pod_ips(self) -> list[str]:
        return [
            p.status.pod_ip
            for p in self.pods()
            if p.metadata.deletion_timestamp is None and p.status.pod_ip and ready(p)
        ]

    def holder(self) -> str:
        """The pod holding the Lease (its identity is `<hostname = pod name>_<random>`)."""
        lease = client.CoordinationV1Api(self.api).read_namespaced_lease(LEASE, self.namespace)
        return str(lease.spec.holder_identity or "").rsplit("_", 1)[0]

    def collect_logs(self) -> None:
        core = client.CoreV1Api(self.api)
        for pod in self.pods():
            name = pod.metadata.name
            with contextlib.suppress(ApiException):
                text = core.read_namespaced_pod_log(name, self.namespace, container="operator")
                if len(text) >= len(self.logs.get(name, "")):
                    self.logs[name] = text

    def forbidden(self) -> list[str]:
        self.collect_logs()
        return [
            f"{pod}: {line}"
            for pod, text in self.logs.items()
            for line in text.splitlines()
            # Not in the timestamp: "14:57:26.403+00:00" has a 403 of its own.
            if FORBIDDEN.search(TIMESTAMP.sub("", line))
        ]

    def report(self) -> str:
        """The operator pods' state and logs, for a failure message."""
        self.collect_logs()
        lines = [
            f"pod {p.metadata.name} {p.status.phase} ready={ready(p)} ip={p.status.pod_ip}"
            for p in self.pods()
        ]
        lines += [f"--- log of {pod} ---\n{text[-6000:]}" for pod, text in self.logs.items()]
        return "\n".join(lines)

    def metrics(self) -> str:
        """All Ready replicas' /metrics: directly here (pod IPs are local), else via the API."""
        port = self.values["http"]["port"]
        core = client.CoreV1Api(self.api)
        texts = []
        for pod in self.pods():
            if pod.metadata.deletion_timestamp is not None or not ready(pod):
                continue
            if self.local:  # the API server refuses to proxy to loopback pod IPs
                url = f"http://{pod.status.pod_ip}:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    texts.append(reply.read().decode())
            else:
                texts.append(
                    core.connect_get_namespaced_pod_proxy_with_path(
                        f"{pod.metadata.name}:{port}", self.namespace, "metrics"
                    )
                )
        return "\n".join(texts)

    def point_webhook(self, url: str | None) -> None:
        """Test bed only: the webhook at `url` (through the forwarder), or back at the Service."""
        admission = client.AdmissionregistrationV1Api(self.api)
        current = admission.read_mutating_webhook_configuration(GATE_CONFIGURATION)
        config = current.webhooks[0].client_config
        if url is not None:
            patch = [{"op": "add", "path": "/webhooks/0/clientConfig/url", "value": url}]
            if config.service is not None:
                patch.insert(0, {"op": "remove", "path": "/webhooks/0/clientConfig/service"})
        else:
            service = {"name": RELEASE, "namespace": self.namespace, "path": "/mutate-pods"}
            patch = [{"op": "add", "path": "/webhooks/0/clientConfig/service", "value": service}]
            if config.url is not None:
                patch.insert(0, {"op": "remove", "path": "/webhooks/0/clientConfig/url"})
        admission.patch_mutating_webhook_configuration(GATE_CONFIGURATION, patch)

    def start_forwarder(self) -> None:
        if not self.local:
            return
        if self.forwarder is not None:
            self.forwarder.stop()
        self.forwarder = TcpForwarder(self.ready_pod_ips, self.values["webhook"]["port"]).start()
        self.point_webhook(f"https://localhost:{self.forwarder.port}/mutate-pods")

    def ensure_installed(self) -> None:
        """The current chart installed with two Ready replicas, whatever ran before (tests run
        in random order; one of them uninstalls the release, another kills its leader).

        Settled means no third pod and a live leader: under a real kubelet a replaced pod stays
        while its containers stop (the upgrade's rollout, a killed leader), and the Lease of a
        leader that is gone outlives it until it expires."""
        if not self.installed:
            self.install_or_upgrade("install", charttest.CHART)
            self.start_forwarder()

        def settled() -> bool:
            pods = self.pods()
            live = {p.metadata.name for p in pods if p.metadata.deletion_timestamp is None}
            try:
                holder = self.holder()
            except ApiException:  # no Lease yet
                return False
            return len(pods) == 2 == len(self.ready_pod_ips()) and holder in live

        wait_for("two Ready replicas, no other pod, one of them leading", settled, timeout=90)

    def ensure_uninstalled(self) -> None:
        if self.installed:
            self.helm("uninstall", RELEASE, "--namespace", self.namespace, "--wait")
            self.installed = False


def _create_namespace(api: client.ApiClient, prefix: str, labels: dict[str, str]) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": {**labels, E2E_LABEL: "true"}}})
    wait_for(
        f"ServiceAccount default in {name}",
        lambda: _exists(lambda: core.read_namespaced_service_account("default", name)),
        timeout=30,
    )
    return name


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _delete_namespace(api: client.ApiClient, name: str) -> None:
    with contextlib.suppress(ApiException):
        client.CoreV1Api(api).delete_namespace(name)


def _adopt_crd_into_release(api: client.ApiClient, namespace: str) -> None:
    """The session applied the CRD with kubectl-like calls; Helm adopts it with these marks."""
    client.ApiextensionsV1Api(api).patch_custom_resource_definition(
        CRD_NAME,
        {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": RELEASE,
                    "meta.helm.sh/release-namespace": namespace,
                },
            }
        },
    )


def _quickstart(api: client.ApiClient, namespace: str, url: str) -> dict[str, Any]:
    quickstart = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    for document in quickstart:
        if document["kind"] == "Secret":
            document.pop("data", None)
            document["stringData"] = {"url": url}
    kubetest.create_objects(api, namespace, quickstart)
    return kubetest.wait_for_condition(api, namespace, "shop", "Ready", reason="Succeeded")


def _values(local: bool, real_node_image: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {
        # Quick failover in the test: a standby takes over 6 s after the leader's last renewal.
        "leaderElection": {"leaseDuration": 6, "renewDeadline": 4, "retryPeriod": 1},
        "http": {"port": 8080},
        "webhook": {"port": 9443},
    }
    if real_node_image:  # the test bed's real node: the image `make image` built, no registry
        repository, tag = real_node_image.rsplit(":", 1)
        values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "Never"}
    if local:
        # Every pod shares the host's network: bind the pod IP, on ports nobody else uses.
        values.update(listenOnPodIP=True, http={"port": free_port()}, webhook={"port": free_port()})
    return values


@pytest.fixture(scope="module")
def chart_release(
    kubeconfig: Path,
    k8s: client.ApiClient,
    operator: OperatorProcess,
    crds: None,
    local_cluster: bool,
    real_node: bool,
    postgres_admin_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartInstall]:
    """The chart installed at its first committed version, with a migration, then upgraded."""
    # Pods as host processes (the pod agent) need the test bed's workarounds; real containers
    # (the local real node, or a KUBECONFIG cluster) use the chart's Services as they are.
    local = local_cluster and not real_node
    image = os.environ.get("LOCKSTEP_RUNNER_IMAGE") if local_cluster and real_node else None
    operator.stop()  # one leader only: the chart's
    admission = client.AdmissionregistrationV1Api(k8s)
    with contextlib.suppress(ApiException):  # its URL points at the stopped process
        admission.delete_mutating_webhook_configuration(SESSION_GATE_CONFIGURATION)
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    release_namespace = _create_namespace(k8s, "lockstep-chart", restricted)
    keep_namespace = _create_namespace(k8s, "lockstep-chart-keep", {})
    install = ChartInstall(kubeconfig, k8s, release_namespace, _values(local, image), local)
    try:
        _adopt_crd_into_release(k8s, release_namespace)
        previous, origin = charttest.previous_chart(tmp_path_factory.mktemp("previous-chart"))
        install.install_or_upgrade("install", previous)
        with extra_database(postgres_admin_url) as url:
            before = _quickstart(k8s, keep_namespace, url)
            jobs_before = len(kubetest.jobs_of(k8s, keep_namespace, "shop"))
            install.notes = install.install_or_upgrade("upgrade", charttest.CHART)
            after = kubetest.get_migration(k8s, keep_namespace, "shop")
            time.sleep(3)  # a reconcile after the upgrade must not start another run
            install.upgrade = {
                "from": origin,
                "before": before,
                "after": after,
                "jobs_before": jobs_before,
                "jobs_after": len(kubetest.jobs_of(k8s, keep_namespace, "shop")),
                "keep_namespace": keep_namespace,
                "crd": client.ApiextensionsV1Api(k8s).read_custom_resource_definition(CRD_NAME),
            }
            install.start_forwarder()
            yield install
    except BaseException:
        print(install.report())  # shown with the failure: why the operator did not do it
        raise
    finally:
        install.collect_logs()
        if install.forwarder is not None:
            install.forwarder.stop()
        if install.installed:
            with contextlib.suppress(AssertionError):
                install.helm("uninstall", RELEASE, "--namespace", release_namespace, "--wait")
        _delete_namespace(k8s, release_namespace)
        _delete_namespace(k8s, keep_namespace)
        kubetest.apply_crds(k8s)  # as the other modules expect it (no Helm marks)
        operator.start()  # re-registers its own URL webhook
        operator.wait_leader()


@pytest.fixture
def chart(chart_release: ChartInstall) -> ChartInstall:
    """The module's release, installed and Ready for this test."""
    chart_release.ensure_installed()
    return chart_release


# --- rendering checked by the real API server --------------------------------------------------


@pytest.mark.parametrize("values_file", charttest.CI_VALUES, ids=lambda p: p.name)
def test_rendered_manifests_pass_a_server_side_dry_run(
    values_file: Path, namespace: str, kubectl: Path, kubeconfig: Path
) -> None:
    """Admission, defaulting and validation of every object, without creating anything."""
    overrides = {"watchNamespaces": [namespace]} if "namespaced" in values_file.name else {}
    if "observability" in values_file.name:
        overrides["grafanaDashboard"] = {"enabled": True, "namespace": namespace}
    manifests = charttest.render([values_file], overrides, release="dryrun", namespace=namespace)
    ours = [m for m in manifests if not str(m["apiVersion"]).startswith(FOREIGN_GROUPS)]
    assert len(ours) >= 7
    result = subprocess.run(
        [
            str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "--server-side",
            "--dry-run=server", "--force-conflicts", "--field-manager=lockstep-e2e-dry-run",
            "-f", "-",
        ],
        input=yaml.safe_dump_all(ours),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(ours), result.stdout


# --- the installed chart -----------------------------------------------------------------------


def test_helm_upgrade_from_the_previous_chart_keeps_migrations(
    chart: ChartInstall,
) -> None:
    report = chart.upgrade
    print(f"upgraded from the chart at {report['from']}")
    before, after = report["before"], report["after"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert kubetest.condition(after, "Ready")["status"] == "True"  # type: ignore[index]
    assert after["status"]["appliedRevision"] == before["status"]["appliedRevision"] == "2"
    assert report["jobs_after"] == report["jobs_before"] == 1, "the upgrade re-ran a migration"
    crd = report["crd"]
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    assert crd.metadata.annotations["meta.helm.sh/release-name"] == RELEASE


def test_operator_runs_under_the_charts_service_account(
    chart: ChartInstall, kubectl: Path, kubeconfig: Path
) -> None:
    pods = chart.pods()
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.service_account_name == SERVICE_ACCOUNT
        (container,) = pod.spec.containers
        assert not any("kubeconfig" in arg for arg in container.args)
        assert container.security_context.read_only_root_filesystem is True
    assert chart.holder() in {p.metadata.name for p in pods}

    def can_i(*what: str) -> str:
        return subprocess.run(
            [
                str(kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i", *what,
                f"--as=system:serviceaccount:{chart.namespace}:{SERVICE_ACCOUNT}",
            ],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip

    assert can_i("*", "*") == "no"  # not admin
    # Secrets are read one by one (watchSecrets is opt-in, ADR 19); writes only its own TLS Secret
    assert can_i("list", "secrets", "-A") == "no"
    assert can_i("delete", "secrets", "-n", "default") == "no"
    assert can_i("patch", "secrets", "-n", "default") == "no"
    assert can_i("get", "secrets", "-n", "default") == "yes"
    assert can_i("update", "secrets", "-n", chart.namespace) == "no"
    assert can_i("create", "clusterrolebindings") == "no"
    assert can_i("patch", "pods", "-n", "default") == "yes"
    assert can_i("patch", f"mutatingwebhookconfigurations/{SESSION_GATE_CONFIGURATION}") == "no"
    assert can_i("patch", f"mutatingwebhookconfigurations/{GATE_CONFIGURATION}") == "yes"


def test_notes_say_how_to_check_and_the_checks_pass(
    chart: ChartInstall, kubectl: Path, kubeconfig: Path
) -> None:
    notes = chart.notes
    commands = [
        line.strip()
        for line in notes.splitlines()
        if line.strip().startswith("kubectl ") and "|" not in line and "apply" not in line
    ]
    wanted = ("rollout status", "get pods", "get lease", "get crd")
    assert all(any(w in c for c in commands) for w in wanted), notes
    outputs = {}
    for command in commands:
        if "shop" in command:  # the quickstart steps: their own test below
            continue
        argv = [str(kubectl), "--kubeconfig", str(kubeconfig), *shlex.split(command)[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        outputs[command] = result.stdout
    lease = next(out for command, out in outputs.items() if "get lease" in command)
    assert lease.strip().startswith(f"{RELEASE}-")
    (webhook,) = (
        client.AdmissionregistrationV1Api(chart.api)
        .read_mutating_webhook_configuration(GATE_CONFIGURATION)
        .webhooks
    )
    assert webhook.client_config.ca_bundle, "the operator did not inject its CA"


def test_quickstart_goes_ready_under_the_chart(
    chart: ChartInstall, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    body = _quickstart(k8s, namespace, pg_url)
    assert body["status"]["appliedRevision"] == "2"
    assert body["status"]["lastRun"]["result"] == "Succeeded"
    (job,) = kubetest.jobs_of(k8s, namespace, "shop")
    assert job.metadata.name == body["status"]["lastRun"]["job"]
    # The status is written before the Event is posted (ADR 17): wait for that Event itself.
    assert "Succeeded" in kubetest.wait_for_events(k8s, namespace, "shop", {"Succeeded"})
    metrics = chart.metrics()
    assert f'lockstep_migration_ready{{name="shop",namespace="{namespace}"}} 1.0' in metrics
    assert not chart.forbidden()


# --- the rollout gate (examples/expand-contract) -----------------------------------------------


def test_gated_rollout_under_the_chart(
    chart: ChartInstall,
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
    node_images: set[str] | None,
) -> None:
    if node_images is not None and f"docker.io/{APP}:1" not in node_images:
        pytest.skip(
            f"the real node has no registry and {APP}:1/:2 (examples/expand-contract/Dockerfile)"
            " is not built and imported by the test bed yet"
        )
    kubetest.create_secret(k8s, namespace, "shop-db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "shop-migrations", migration_files(1))
    kubetest.create_migration(k8s, namespace, expand("1", 1))
    kubetest.wait_for_condition(k8s, namespace, "shop-expand", "Ready", reason="Succeeded")
    client.AppsV1Api(k8s).create_namespaced_deployment(namespace, deployment(1))
    wait_for("app v1 rolled out", lambda: rolled_out(k8s, namespace, 1), timeout=90)
    assert not any(gated(p) for p in app_pods(k8s, namespace))

    with lock_held(pg_url):
        kubetest.replace_config_map(k8s, namespace, "shop-migrations", migration_files(1, 2))
        kubetest.patch_migration(
            k8s, namespace, "shop-expand", {"spec": {"target": "2", "image": f"{APP}:2"}}
        )
        template = deployment(2)["spec"]["template"]
        client.AppsV1Api(k8s).patch_namespaced_deployment(
            "web", namespace, {"spec": {"template": template}}
        )
        wait_for("new pods gated, old serving", lambda: new_pods_gated_old_serving(k8s, namespace))
        time.sleep(2)
        assert new_pods_gated_old_serving(k8s, namespace)

    kubetest.wait_for_condition(k8s, namespace, "shop-expand", "Ready", reason="Succeeded")
    wait_for("app v2 rolled out", lambda: rolled_out(k8s, namespace, 2), timeout=90)
    assert "display_name" in column_names(pg_url, "customers")
    kubetest.wait_for_events(k8s, namespace, "shop-expand", {"ReleasedPods"})
    assert 'lockstep_gate_admissions_total{decision="gated"}' in chart.metrics()
    if chart.forwarder is not None:
        assert chart.forwarder.connections > 0  # the API server called our pods
    assert not chart.forbidden()


# --- failover ----------------------------------------------------------------------------------


def test_failover_when_the_leader_pod_is_killed(
    chart: ChartInstall, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    leader = chart.holder()
    standby = [p.metadata.name for p in chart.pods() if p.metadata.name != leader]
    assert len(standby) == 1
    chart.collect_logs()  # the leader's log is gone with its pod
    assert "became the leader" in chart.logs[leader]
    killed_at = time.monotonic()
    client.CoreV1Api(k8s).delete_namespaced_pod(leader, chart.namespace, grace_period_seconds=0)

    def new_live_leader() -> str | None:
        # The standby, or the ReplicaSet's replacement pod: whichever asks first once the Lease
        # is free (a real kubelet starts the replacement in about a second; both are correct).
        holder = chart.holder()
        live = {p.metadata.name for p in chart.pods() if p.metadata.deletion_timestamp is None}
        return holder if holder and holder != leader and holder in live else None

    successor = wait_for("another live replica to take the Lease", new_live_leader, timeout=30)
    print(f"failover: {successor} leads {time.monotonic() - killed_at:.1f}s after the kill")
    body = _quickstart(k8s, namespace, pg_url)  # the new leader reconciles
    assert body["status"]["appliedRevision"] == "2"
    wait_for("two Ready replicas again", lambda: len(chart.ready_pod_ips()) == 2, 60)
    assert not chart.forbidden()


def test_no_request_of_the_operator_was_forbidden(chart: ChartInstall) -> None:
    problems = chart.forbidden()
    assert len(chart.logs) >= 2, "expected the logs of both replicas"
    assert any("became the leader" in text for text in chart.logs.values())
    assert problems == [], "\n".join(problems)


# --- CRDs outlive the release ------------------------------------------------------------------


def test_crd_and_migrations_survive_disabling_crds_and_uninstalling(
    chart: ChartInstall, k8s: client.ApiClient
) -> None:
    keep = chart.upgrade["keep_namespace"]
    extensions = client.ApiextensionsV1Api(k8s)
    if chart.local:
        chart.point_webhook(None)  # as the chart has it, so that Helm's patch applies
    chart.install_or_upgrade("upgrade", charttest.CHART, crds={"enabled": False})
    assert extensions.read_custom_resource_definition(CRD_NAME).metadata.uid
    assert kubetest.get_migration(k8s, keep, "shop")["status"]["appliedRevision"] == "2"
    assert chart.forbidden() == []
    chart.helm("uninstall", RELEASE, "--namespace", chart.namespace, "--wait")
    chart.installed = False
    assert extensions.read_custom_resource_definition(CRD_NAME).metadata.uid
    assert kubetest.get_migration(k8s, keep, "shop")["metadata"]["name"] == "shop"
    admission = client.AdmissionregistrationV1Api(k8s)
    assert not _exists(lambda: admission.read_mutating_webhook_configuration(GATE_CONFIGURATION))


def test_a_namespaced_install_reconciles_its_namespaces_with_roles_only(
    chart_release: ChartInstall, k8s: client.ApiClient, namespace: str, pg_url: str
) -> None:
    """watchNamespaces: Roles in the watched namespace, no ClusterRole on namespaced objects."""
    chart_release.ensure_uninstalled()
    chart_release.logs.clear()
    other = _create_namespace(k8s, "lockstep-chart-unwatched", {})
    try:
        chart_release.install_or_upgrade("install", charttest.CHART, watchNamespaces=[namespace])
        rbac = client.RbacAuthorizationV1Api(k8s)
        assert rbac.read_namespaced_role(RELEASE, namespace).rules
        assert not _exists(lambda: rbac.read_cluster_role(RELEASE))
        body = _quickstart(k8s, namespace, pg_url)
        assert body["status"]["appliedRevision"] == "2"
        ignored = kubetest.create_migration(k8s, other, expand("1", 1))
        time.sleep(3)
        untouched = kubetest.get_migration(k8s, other, ignored["metadata"]["name"])
        # Only the CRD's default (observedGeneration 0): no operator ever wrote to it.
        assert untouched.get("status") == {"observedGeneration": 0}
        assert chart_release.forbidden() == []
        assert any("became the leader" in text for text in chart_release.logs.values())
    finally:
        chart_release.helm("uninstall", RELEASE, "--namespace", chart_release.namespace, "--wait")
        chart_release.installed = False
        _delete_namespace(k8s, other)
