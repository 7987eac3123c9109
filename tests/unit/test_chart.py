"""The Helm chart, offline: lint, render with every ci/*-values.yaml, Kubernetes schemas, RBAC.

Runs the real `helm` (built from Go modules, cached) but needs no cluster; the e2e test
tests/e2e/test_chart_install.py installs the chart into the test control plane.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

import sync_chart_crds
from alerting import promtool
from charttest import (
    CHART,
    CI_VALUES,
    REPO,
    HelmError,
    Manifest,
    by_kind,
    one,
    render,
    run_helm,
)
from lockstep.cli import main as cli
from lockstep.controller import certs

KUBERNETES_VERSION = "1.35.0"  # the test control plane runs 1.35.x
# Kinds whose schemas live in other projects' CRDs (kubernetes-validate has none of them).
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}
DOCS = REPO / "docs" / "getting-started.md"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
CI_IDS = [path.name for path in CI_VALUES]


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return render()


# --- lint and render -------------------------------------------------------------------------


def test_there_are_ci_values_files() -> None:
    assert len(CI_VALUES) >= 5, CI_VALUES


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict_passes(values_file: Path) -> None:
    output = run_helm("lint", "--strict", str(CHART), "--values", str(values_file))
    assert "1 chart(s) linted, 0 chart(s) failed" in output
    assert "[WARNING]" not in output and "[ERROR]" not in output, output


def _validated(manifest: Manifest) -> str:
    """kubernetes-validate in strict mode (unknown fields fail); the kind's name when checked."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return str(manifest["kind"])


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_every_rendered_manifest_matches_the_kubernetes_schemas(values_file: Path) -> None:
    manifests = render([values_file])
    assert manifests
    checked, foreign = [], []
    for manifest in manifests:
        key = (manifest.get("apiVersion"), manifest.get("kind"))
        if key in FOREIGN_KINDS:
            foreign.append(manifest)
            continue
        try:
            checked.append(_validated(manifest))
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(
                f"{values_file.name}: {key[1]} {manifest['metadata']['name']}: {error}"
            ) from None
        except SchemaNotFoundError:
            raise AssertionError(f"{values_file.name}: no Kubernetes schema for {key}") from None
    assert "Deployment" in checked
    for manifest in foreign:  # no schema here: at least a well-formed object
        assert manifest["metadata"]["name"] and manifest["metadata"]["namespace"]
        assert isinstance(manifest["spec"], dict) and manifest["spec"]


def test_the_schema_check_itself_catches_a_broken_manifest(defaults: list[Manifest]) -> None:
    broken = json.loads(json.dumps(one(defaults, "Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    broken["spec"]["template"]["spec"]["securityContext"]["runAsUsr"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        _validated(broken)


# --- values.schema.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "value must be one of 'Fail', 'Ignore'"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"webhook": {"certManager": {"enabled": "yes"}}}, "got string, want boolean"),
        ({"image": {"digest": "latest"}}, "at '/image/digest'"),
        ({"logLevel": "trace"}, "value must be one of 'info', 'debug'"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "at '/resources/requests/cpu'"),
    ],
)
def test_values_schema_rejects_a_wrong_value_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError) as raised:
        render(values=values)
    text = str(raised.value)
    assert "values don't meet the specifications of the schema" in text
    assert message in text, text


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in (schema.get("properties") or {}).items():
        yield f"{prefix}{key}", child
        yield from _schema_paths(child, f"{prefix}{key}.")


def _value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key of values.yaml, down to where the schema stops naming properties."""
    for key, value in values.items():
        yield f"{prefix}{key}"
        child = (schema.get("properties") or {}).get(key) or {}
        if isinstance(value, dict) and child.get("properties"):
            yield from _value_paths(value, child, f"{prefix}{key}.")


def test_values_schema_covers_every_value_and_describes_it() -> None:
    described = dict(_schema_paths(SCHEMA))
    missing = [path for path in _value_paths(VALUES, SCHEMA) if path not in described]
    assert not missing, f"values.yaml keys without a schema: {missing}"
    undescribed = [p for p, s in described.items() if len(s.get("description", "")) < 10]
    assert not undescribed, f"schema properties without a description: {undescribed}"
    closed = [p for p, s in described.items() if s.get("properties")]
    assert all(described[p].get("additionalProperties") is False for p in closed)
    assert SCHEMA["additionalProperties"] is False


def test_values_yaml_passes_its_own_schema_and_every_value_has_a_comment() -> None:
    import jsonschema

    jsonschema.validate(VALUES, SCHEMA)
    lines = (CHART / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^([a-zA-Z]+):", line)
        if match and index > 0:
            assert lines[index - 1].startswith("#"), f"no comment above {line!r}"


# --- the Deployment --------------------------------------------------------------------------


def _container(manifests: list[Manifest]) -> dict[str, Any]:
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_deployment_has_safe_defaults(defaults: list[Manifest]) -> None:
    deployment = one(defaults, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(defaults)
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["serviceAccountName"] == one(defaults, "ServiceAccount")["metadata"]["name"]


def _operator_args(manifests: list[Manifest]) -> list[str]:
    args = _container(manifests)["args"]
    return [re.sub(r"\$\((\w+)\)", "10.0.0.1", str(a)) for a in args]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_the_operator_cli_accepts_every_flag_the_chart_passes(values_file: Path) -> None:
    args = cli.build_parser().parse_args(_operator_args(render([values_file])))
    assert args.command == "operator"


def test_flags_name_the_objects_the_chart_creates(defaults: list[Manifest]) -> None:
    args = cli.build_parser().parse_args(_operator_args(defaults))
    webhook = one(defaults, "MutatingWebhookConfiguration")
    service = one(defaults, "Service")
    assert args.webhook_configuration == webhook["metadata"]["name"] == "lockstep-gate"
    assert args.webhook_service == service["metadata"]["name"]
    client = webhook["webhooks"][0]["clientConfig"]["service"]
    assert (client["name"], client["port"], client["path"]) == (
        args.webhook_service,
        443,
        "/mutate-pods",
    )
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["webhook"]["targetPort"] == "webhook" and ports["http-metrics"]["port"] == 8080
    local = one(defaults, "Role", "lockstep-local")
    named = {name for rule in local["rules"] for name in rule.get("resourceNames", [])}
    assert {args.lease_name, args.webhook_secret} <= named
    assert args.leader_election and args.lease_duration > args.renew_deadline > args.retry_period
    assert (
        args.runner_image == _container(defaults)["image"] == "ghcr.io/lockstep-dev/lockstep:0.1.0"
    )


def test_webhook_matches_the_operators_own_definition(defaults: list[Manifest]) -> None:
    """The chart's webhook is configuration_for_url's, with a Service instead of a URL."""
    from lockstep.controller import webhook

    options = webhook.WebhookOptions(url="https://example.invalid")
    (expected,) = webhook.configuration_for_url(options, b"ca")["webhooks"]
    (rendered,) = one(defaults, "MutatingWebhookConfiguration")["webhooks"]
    for key in (
        "name",
        "admissionReviewVersions",
        "sideEffects",
        "failurePolicy",
        "timeoutSeconds",
        "reinvocationPolicy",
        "objectSelector",
        "rules",
    ):
        assert rendered[key] == expected[key], key
    assert "caBundle" not in rendered["clientConfig"]  # injected at run time, never by Helm


def test_pod_ip_binding_is_optional() -> None:
    plain = _container(render())["args"]
    bound = _container(render(values={"listenOnPodIP": True}))["args"]
    assert not any("-host=" in a for a in plain)
    assert {"--http-host=$(POD_IP)", "--webhook-host=$(POD_IP)"} <= set(bound)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"leaderElection": {"enabled": False}}, "replicaCount > 1 needs leaderElection"),
        ({"leaderElection": {"renewDeadline": 20}}, "leaseDuration > renewDeadline > retryPeriod"),
    ],
)
def test_unsafe_combinations_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values=values)


# --- RBAC ------------------------------------------------------------------------------------

Rule = tuple[str, str, str, str, str]  # role, apiGroup, resource, verb, resourceName


def _rules(manifests: list[Manifest]) -> set[Rule]:
    found: set[Rule] = set()
    for manifest in by_kind(manifests, "ClusterRole") + by_kind(manifests, "Role"):
        name = manifest["metadata"]["name"]
        if name.endswith(("-view", "-edit")):
            continue  # aggregated into view/edit/admin for people, not the operator's
        for rule in manifest["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for resource_name in rule.get("resourceNames") or [""]:
                            found.add((name, group, resource, verb, resource_name))
    return found


def _documented_rules() -> set[Rule]:
    """The permission table of docs/getting-started.md, one tuple per verb."""
    section = DOCS.read_text().split("## Permissions", 1)[1]
    found: set[Rule] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("role", "---"):
            continue
        role, group, resources, verbs, names, why = cells
        assert len(why) > 20, f"say why: {line}"
        for resource in resources.split(", "):
            for verb in verbs.split(", "):
                found.add((role, group, resource, verb, names))
    return found


def test_docs_list_exactly_the_permissions_the_chart_grants(defaults: list[Manifest]) -> None:
    granted, documented = _rules(defaults), _documented_rules()
    assert granted - documented == set(), "granted but not documented"
    assert documented - granted == set(), "documented but not granted"


def test_no_wildcards_and_secrets_are_only_read(defaults: list[Manifest]) -> None:
    granted = _rules(defaults)
    assert not any("*" in (group, resource, verb) for _, group, resource, verb, _n in granted)
    secret_verbs = {verb for _, g, resource, verb, _n in granted if resource == "secrets"}
    # one GET per Secret read (watchSecrets is opt-in, ADR 19); writes only to the webhook's own
    # TLS Secret
    assert secret_verbs == {"get", "create", "update"}
    writes = {(r, v, n) for r, g, res, v, n in granted if res == "secrets" and v == "update"}
    assert writes == {("lockstep-local", "update", "lockstep-webhook-tls")}
    assert ("lockstep", "lockstep.dev", "databasemigrations", "patch", "") not in granted


def test_watch_namespaces_makes_roles_only_in_those_namespaces() -> None:
    manifests = render(values={"watchNamespaces": ["team-a", "team-b"]})
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(manifests, "Role")
    }
    assert roles == {
        ("team-a", "lockstep"),
        ("team-b", "lockstep"),
        ("lockstep-system", "lockstep-local"),
    }
    cluster_scoped = {
        resource
        for role in by_kind(manifests, "ClusterRole")
        if not role["metadata"]["name"].endswith(("-view", "-edit"))
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    assert cluster_scoped == {
        "customresourcedefinitions",
        "namespaces",
        "mutatingwebhookconfigurations",
    }
    bindings = {b["metadata"]["name"] for b in by_kind(manifests, "ClusterRoleBinding")}
    assert bindings == {"lockstep-cluster"}
    args = _container(manifests)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    (webhook,) = one(manifests, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
    ]
    cluster_wide = {r for r in _rules(render()) if r[0] == "lockstep"}
    for role in by_kind(manifests, "Role"):
        if role["metadata"]["name"] == "lockstep":
            assert _rules([role]) == cluster_wide


def test_minimal_install_grants_no_lease_webhook_or_tls_rights() -> None:
    manifests = render([CHART / "ci" / "minimal-values.yaml"])
    resources = {rule[2] for rule in _rules(manifests)}
    assert not resources & {"leases", "mutatingwebhookconfigurations"}
    assert not by_kind(manifests, "MutatingWebhookConfiguration")
    assert not by_kind(manifests, "CustomResourceDefinition")
    assert "--webhook-port=0" in _container(manifests)["args"]
    assert "--no-leader-election" in _container(manifests)["args"]


# --- CRDs ------------------------------------------------------------------------------------


def test_chart_crd_templates_are_in_sync_with_crds_dir() -> None:
    assert sync_chart_crds.stale() == [], "run `python tools/sync_chart_crds.py`"


def test_rendered_crd_is_the_source_crd_with_the_keep_policy(defaults: list[Manifest]) -> None:
    source = yaml.safe_load((REPO / "crds" / "databasemigrations.yaml").read_text())
    rendered = one(defaults, "CustomResourceDefinition")
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["name"] == source["metadata"]["name"]
    annotations = rendered["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"
    assert annotations["argocd.argoproj.io/sync-options"] == "Prune=false"
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    without_keep = one(render(values={"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in without_keep["metadata"]["annotations"]
    assert not by_kind(render(values={"crds": {"enabled": False}}), "CustomResourceDefinition")


def test_drift_between_crds_and_the_chart_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, chart_dir = tmp_path / "crds", tmp_path / "chart-crds"
    source_dir.mkdir()
    original = (REPO / "crds" / "databasemigrations.yaml").read_text()
    (source_dir / "databasemigrations.yaml").write_text(original)
    monkeypatch.setattr(sync_chart_crds, "SOURCE_DIR", source_dir)
    monkeypatch.setattr(sync_chart_crds, "CHART_CRD_DIR", chart_dir)
    monkeypatch.setattr(sync_chart_crds, "REPO", tmp_path)
    assert sync_chart_crds.stale() == ["chart-crds/databasemigrations.yaml is stale"]
    sync_chart_crds.sync()
    assert sync_chart_crds.stale() == []
    edited = original.replace("shortNames: [dbm, dbmig]", "shortNames: [dbm]")
    assert edited != original
    (source_dir / "databasemigrations.yaml").write_text(edited)
    assert sync_chart_crds.stale() == ["chart-crds/databasemigrations.yaml is stale"]
    assert sync_chart_crds.main(["--check"]) == 1
    (chart_dir / "orphan.yaml").write_text("")
    assert "chart-crds/orphan.yaml has no source in crds/" in sync_chart_crds.stale()


def test_template_braces_in_a_crd_are_escaped_for_helm() -> None:
    source = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
    source += "metadata:\n  name: x.example.com\nspec:\n  description: 'use {{ .name }}'\n"
    text = sync_chart_crds.render("x.yaml", source)
    assert '{{ "{{" }} .name {{ "}}" }}' in text


# --- observability and integrations --------------------------------------------------------


def test_prometheus_rule_wraps_the_rule_file_and_promtool_accepts_it(tmp_path: Path) -> None:
    manifests = render([CHART / "ci" / "observability-values.yaml"])
    rule = one(manifests, "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitors_keep_the_migrations_namespace_label() -> None:
    manifests = render([CHART / "ci" / "observability-values.yaml"])
    (endpoint,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True and endpoint["port"] == "http-metrics"
    (pod_endpoint,) = one(manifests, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["honorLabels"] is True and pod_endpoint["port"] == "http"


def test_grafana_dashboard_configmap_holds_the_dashboard() -> None:
    manifests = render([CHART / "ci" / "observability-values.yaml"])
    config_map = one(manifests, "ConfigMap", "lockstep-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(config_map["data"]["lockstep.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())


def test_argocd_health_check_configmap_holds_the_lua_file() -> None:
    lua = CHART / "files" / "argocd" / "lockstep.dev" / "DatabaseMigration" / "health.lua"
    config_map = one(render(values={"argocd": {"healthCheck": True}}), "ConfigMap")
    key = "resource.customizations.health.lockstep.dev_DatabaseMigration"
    assert config_map["data"][key] == lua.read_text().rstrip("\n")


def test_cert_manager_certificate_covers_the_names_the_operator_checks() -> None:
    manifests = render([CHART / "ci" / "cert-manager-values.yaml"])
    certificate = one(manifests, "Certificate", "lockstep-webhook")
    service = one(manifests, "Service")["metadata"]["name"]
    wanted = [*certs.service_names(service, "lockstep-system"), "localhost"]
    assert certificate["spec"]["dnsNames"] == wanted
    assert certificate["spec"]["secretName"] == "lockstep-webhook-tls"
    webhook = one(manifests, "MutatingWebhookConfiguration")
    injected = webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert injected == "lockstep-system/lockstep-webhook"
    assert certificate["spec"]["issuerRef"] == {"name": "lockstep-ca", "kind": "Issuer"}
    hours = int(certificate["spec"]["renewBefore"].rstrip("h"))
    assert hours > 30 * 24, "cert-manager must renew before the operator's own 30-day rule"


def test_pod_disruption_budget_is_off_by_default(defaults: list[Manifest]) -> None:
    assert not by_kind(defaults, "PodDisruptionBudget")
    assert not by_kind(defaults, "ServiceMonitor") and not by_kind(defaults, "PrometheusRule")
    budget = one(render(values={"podDisruptionBudget": {"enabled": True}}), "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


def test_watch_selector_reaches_the_operator_and_each_release_has_its_own_lease() -> None:
    manifests = render(values={"watchSelector": "team=payments,shard in (a,b)"})
    (deployment,) = by_kind(manifests, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--selector=team=payments,shard in (a,b)" in args
    assert "--lease-name=lockstep-leader" in args
    assert not any(a.startswith("--selector") for a in container_args(render()))


def container_args(manifests: list[dict[str, Any]]) -> list[str]:
    (deployment,) = by_kind(manifests, "Deployment")
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_common_labels_extra_volumes_probes_and_host_network_reach_the_manifests() -> None:
    values = {
        "commonLabels": {"team": "platform"},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
        "livenessProbe": {"periodSeconds": 30, "failureThreshold": 5},
        "hostNetwork": True,
        "webhook": {"port": 10260},
    }
    manifests = render(values=values)
    assert all(
        m["metadata"]["labels"]["team"] == "platform"
        for m in manifests
        if m["metadata"].get("labels")
    )
    (deployment,) = by_kind(manifests, "Deployment")
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/corp-ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["livenessProbe"]["periodSeconds"] == 30
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["periodSeconds"] == 2  # the default stays
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "--http-host=$(POD_IP)" in container["args"]
    assert {"name": "webhook", "containerPort": 10260, "protocol": "TCP"} in container["ports"]


def test_secrets_are_not_listed_unless_watch_secrets_is_set() -> None:
    """ADR 19: by default no list/watch on Secrets and the operator does not watch them; the
    opt-in grants both and tells the operator."""
    default = render()
    verbs = {v for _, g, res, v, _n in _rules(default) if res == "secrets"}
    assert verbs == {"get", "create", "update"}
    assert "--watch-secrets" not in container_args(default)
    opted_in = render(values={"watchSecrets": True})
    verbs = {v for _, g, res, v, _n in _rules(opted_in) if res == "secrets"}
    assert verbs == {"get", "list", "watch", "create", "update"}
    assert "--watch-secrets" in container_args(opted_in)
