"""Plans of Alembic scripts baked into an image: the plan Job prints Alembic's offline SQL in
that image and `lockstep classify` reads it; a rollback's plan (DROP TABLE) asks for approval."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from dbtest import scalar
from testbed import kubetest
from testbed.kubetest import REPO, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "alembic-postgresql" / "migration.yaml"
NAME = "alembic-postgresql"
TIMEOUT = 180.0


def alembic_example(url: str, **spec: Any) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"] = {"url": url}
        else:
            document["spec"].update(spec)
    return documents


def awaiting(k8s: client.ApiClient, namespace: str, not_hash: str | None = None) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        body = kubetest.get_migration(k8s, namespace, NAME)
        seen[:] = [body.get("status") or {}]
        ready = kubetest.condition(body, "Ready") or {}
        plan = (body.get("status") or {}).get("plan") or {}
        if ready.get("reason") == "AwaitingApproval" and plan.get("hash") != not_hash:
            return body
        return None

    try:
        return wait_for("AwaitingApproval with a new plan", probe, timeout=TIMEOUT)
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; status: {seen}") from None


def approve(k8s: client.ApiClient, namespace: str, plan_hash: str) -> None:
    annotations = {"lockstep.dev/approve": plan_hash}
    kubetest.patch_migration(k8s, namespace, NAME, {"metadata": {"annotations": annotations}})


def test_alembic_in_an_image_is_planned_from_its_offline_sql(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_objects(k8s, namespace, alembic_example(pg_url, approval="Destructive"))
    first = kubetest.wait_for_condition(
        k8s, namespace, NAME, "Ready", reason="Succeeded", timeout=TIMEOUT
    )
    plan = first["status"]["plan"]
    # Two new tables and an index on one of them: additive, so no approval was needed.
    assert plan["available"] is True and plan["classification"] == "Additive"
    assert plan["summary"]["CREATE TABLE"] >= 2 and plan["summary"]["CREATE INDEX"] == 1
    assert plan["migrations"] == ["0001", "0002"]
    plan_jobs = [
        j for j in kubetest.jobs_of(k8s, namespace, NAME) if j.metadata.name.endswith("-p0")
    ]
    (plan_job,) = plan_jobs
    assert [c.name for c in plan_job.spec.template.spec.init_containers] == ["render"]

    # A rollback drops a table: its plan is destructive and waits for an approval.
    kubetest.patch_migration(k8s, namespace, NAME, {"spec": {"target": "0001"}})
    body = awaiting(k8s, namespace, not_hash=plan["hash"])
    rollback = body["status"]["plan"]
    assert rollback["classification"] == "Destructive"
    assert rollback["direction"] == "Downgrade"
    assert any(f["rule"] == "drop-table" for f in rollback["findings"])
    assert scalar(pg_url, "SELECT to_regclass('public.orders') IS NOT NULL") is True

    approve(k8s, namespace, rollback["hash"])
    done = kubetest.wait_for_condition(
        k8s, namespace, NAME, "Ready", reason="Succeeded", timeout=TIMEOUT
    )
    assert done["status"]["appliedRevision"] == "0001"
    assert scalar(pg_url, "SELECT to_regclass('public.orders') IS NULL") is True
