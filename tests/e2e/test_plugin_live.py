"""`kubectl lockstep` as a real process against the test cluster and the real operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client

from testbed import kubetest
from testbed.kubetest import quickstart_documents, sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

PLUGIN = Path(sys.executable).parent / "kubectl-lockstep"
APPROVE = "lockstep.dev/approve"
RETRY = "lockstep.dev/retry"


def plugin(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the plugin as a person's shell would (no terminal: stdin is empty, not a tty)."""
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed run (exit 1, no traceback)."""
    assert result.returncode == 1, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def quickstart(k8s: client.ApiClient, namespace: str, pg_url: str) -> dict[str, Any]:
    kubetest.create_objects(k8s, namespace, quickstart_documents(pg_url))
    return kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")


def test_status_describe_logs_and_retry_of_a_failing_then_fixed_migration(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    kubeconfig: Path,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "broken",
        {
            "V1__create_items.sql": "CREATE TABLE items (id int PRIMARY KEY);",
            "V2__copy_from_legacy.sql": "INSERT INTO items SELECT id FROM legacy_items;",
        },
    )
    spec = {"retry": {"limit": 0, "backoffSeconds": 1, "maxBackoffSeconds": 1}}
    kubetest.create_migration(k8s, namespace, sql_migration("shop", "broken", **spec))
    body = kubetest.wait_for_condition(k8s, namespace, "shop", "Stalled", timeout=120)
    failed_job = body["status"]["lastRun"]["job"]
    ns = ("-n", namespace)

    header, row = succeeded(plugin(kubeconfig, "status", *ns)).splitlines()
    assert header.split() == ["NAME", "TOOL", "APPLIED", "TARGET", "STATE", "LAST", "RUN", "GATED"]
    applied = body["status"].get("appliedRevision") or "-"  # read after successful runs only
    assert row.split()[:6] == ["shop", "sql", applied, "head", "Stalled", "Failed"]
    assert row.split()[-1] == "0"
    described = succeeded(plugin(kubeconfig, "describe", "shop", *ns))
    assert "State:      Stalled" in described
    history = described[described.index("History (newest first):") :]
    assert failed_job in history and "Failed" in history
    log_tail = described[described.index(f"Log tail of {failed_job}:") :]
    assert "legacy_items" in log_tail
    assert "legacy_items" in succeeded(plugin(kubeconfig, "logs", "shop", *ns))

    # The cause is fixed outside the spec; `retry` asks Lockstep for another run.
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE legacy_items (id int); INSERT INTO legacy_items VALUES (7)"
        )
    retried = succeeded(plugin(kubeconfig, "retry", "shop", *ns))
    annotations = kubetest.get_migration(k8s, namespace, "shop")["metadata"]["annotations"]
    assert annotations[RETRY] and f"{RETRY}={annotations[RETRY]}" in retried
    body = kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    fixed_job = body["status"]["lastRun"]["job"]
    assert fixed_job != failed_job

    _, row = succeeded(plugin(kubeconfig, "status", *ns)).splitlines()
    assert row.split()[:6] == ["shop", "sql", "2", "head", "Ready", "Succeeded"]
    everywhere = succeeded(plugin(kubeconfig, "status", "-A")).splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "shop"] for line in everywhere[1:])
    listed = json.loads(succeeded(plugin(kubeconfig, *ns, "status", "-o", "json")))
    (item,) = listed["items"]
    assert item["status"]["appliedRevision"] == "2"
    assert "managedFields" not in item["metadata"]

    described = succeeded(plugin(kubeconfig, "describe", "shop", *ns)).splitlines()
    start = described.index("History (newest first):") + 2  # the title, the column names
    assert [line.split()[0] for line in described[start : start + 2]] == [fixed_job, failed_job]
    as_yaml = yaml.safe_load(succeeded(plugin(kubeconfig, "describe", "shop", *ns, "-o", "yaml")))
    assert as_yaml["status"]["lastRun"]["job"] == fixed_job

    logs = succeeded(plugin(kubeconfig, "logs", "shop", *ns))
    assert "applied 1 migration(s)" in logs and "legacy_items" not in logs
    assert "legacy_items" in succeeded(plugin(kubeconfig, "logs", "shop", *ns, "--job", failed_job))
    assert succeeded(plugin(kubeconfig, "logs", "shop", *ns, "-f")) == logs

    missing = failed(plugin(kubeconfig, "describe", "nope", *ns))
    assert missing == (
        f"error: databasemigration 'nope' not found in namespace '{namespace}'; "
        "list them with: kubectl lockstep status -A"
    )
    assert failed(plugin(kubeconfig, "logs", "shop", *ns, "--job", "nope")) == (
        f"error: job 'nope' not found in namespace '{namespace}'"
    )


def test_rollback_refuses_while_forbidden_then_the_operator_rolls_back(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    kubeconfig: Path,
) -> None:
    quickstart(k8s, namespace, pg_url)

    refused = failed(plugin(kubeconfig, "rollback", "shop", "--to", "1", "--yes", "-n", namespace))
    assert "spec.downgrade: Forbid" in refused and "set spec.downgrade: Allow (in git" in refused
    assert kubetest.get_migration(k8s, namespace, "shop")["spec"]["target"] == "head"

    kubetest.patch_migration(k8s, namespace, "shop", {"spec": {"downgrade": "Allow"}})
    no_tty = failed(plugin(kubeconfig, "rollback", "shop", "--to", "1", "-n", namespace))
    assert "stdin is not a terminal" in no_tty and "pass --yes" in no_tty

    result = plugin(kubeconfig, "rollback", "shop", "--to", "1", "--yes", "-n", namespace)
    assert "spec.target head → 1" in succeeded(result)
    assert "in git too" in result.stderr
    assert kubetest.get_migration(k8s, namespace, "shop")["spec"]["target"] == "1"

    def rolled_back() -> dict[str, Any] | None:
        body = kubetest.get_migration(k8s, namespace, "shop")
        ready = kubetest.condition(body, "Ready") or {}
        done = body["status"].get("appliedRevision") == "1" and ready.get("status") == "True"
        return body if done and body["status"]["observedGeneration"] == 3 else None

    body = wait_for("rollback to revision 1", rolled_back, timeout=120)
    assert body["status"]["history"][0]["direction"] == "Downgrade"
    _, row = succeeded(plugin(kubeconfig, "status", "-n", namespace)).splitlines()
    assert row.split()[:5] == ["shop", "sql", "1", "1", "Ready"]


def test_an_unknown_context_names_the_known_ones(kubeconfig: Path) -> None:
    contexts = sorted(c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"])
    message = failed(plugin(kubeconfig, "--context", "nope", "status"))
    assert message == (
        f"error: context 'nope' not found in {kubeconfig}; contexts: {', '.join(contexts)}"
    )


def service_account_kubeconfig(
    k8s: client.ApiClient, kubeconfig: Path, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount, with a token from TokenRequest."""
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    request = {"spec": {"expirationSeconds": 600}}
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    admin = yaml.safe_load(kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = current["context"]["cluster"]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for c in admin["clusters"] if c["name"] == cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": cluster, "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path.write_text(json.dumps(document))
    return path


def test_a_service_account_without_rights_gets_the_rbac_message(
    k8s: client.ApiClient, namespace: str, crds: None, kubeconfig: Path, tmp_path: Path
) -> None:
    config = service_account_kubeconfig(
        k8s, kubeconfig, namespace, "viewer", tmp_path / "viewer.kubeconfig"
    )
    user = f"system:serviceaccount:{namespace}:viewer"
    denied = failed(plugin(config, "status"))  # the namespace comes from the context
    assert denied == (
        f"error: you may not list databasemigrations.lockstep.dev in namespace '{namespace}' "
        f"(RBAC): ask for a Role in '{namespace}' that allows 'list' on "
        f"databasemigrations.lockstep.dev (you are {user})"
    )
    assert "you may not get databasemigrations.lockstep.dev" in failed(
        plugin(config, "describe", "shop")
    )

    # With read rights only, changing anything is the next thing it may not do.
    rbac = client.RbacAuthorizationV1Api(k8s)
    rule = {
        "apiGroups": ["lockstep.dev"],
        "resources": ["databasemigrations"],
        "verbs": ["get", "list"],
    }
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "read"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
        },
    )
    kubetest.create_migration(k8s, namespace, sql_migration("shop", "shop-migrations"))
    wait_for("read access", lambda: plugin(config, "status").returncode == 0, timeout=30)
    assert "you may not patch databasemigrations.lockstep.dev" in failed(
        plugin(config, "retry", "shop")
    )


def test_approve_lets_a_plan_that_waits_for_approval_run(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    kubeconfig: Path,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "m",
        {
            "V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY, note text);",
            "V2__drop_note.sql": "ALTER TABLE items DROP COLUMN note;",
        },
    )
    kubetest.create_migration(k8s, namespace, sql_migration("gated", "m", approval="Always"))

    def waiting() -> dict[str, Any] | None:
        body = kubetest.get_migration(k8s, namespace, "gated")
        ready = kubetest.condition(body, "Ready") or {}
        plan = (body.get("status") or {}).get("plan") or {}
        return body if ready.get("reason") == "AwaitingApproval" and plan.get("hash") else None

    body = wait_for("Ready reason AwaitingApproval with status.plan.hash", waiting, timeout=60)
    plan_hash = body["status"]["plan"]["hash"]
    _, row = succeeded(plugin(kubeconfig, "status", "-n", namespace)).splitlines()
    assert row.split()[4] == "AwaitingApproval"
    assert f"Hash:            {plan_hash}" in succeeded(
        plugin(kubeconfig, "describe", "gated", "-n", namespace)
    )
    assert "pass --yes" in failed(plugin(kubeconfig, "approve", "gated", "-n", namespace))

    approved = succeeded(plugin(kubeconfig, "approve", "gated", "--yes", "-n", namespace))
    assert f"{APPROVE}={plan_hash}" in approved
    annotations = kubetest.get_migration(k8s, namespace, "gated")["metadata"]["annotations"]
    assert annotations[APPROVE] == plan_hash
    body = kubetest.wait_for_condition(k8s, namespace, "gated", "Ready", timeout=120)
    assert body["status"]["appliedRevision"] == "2"
