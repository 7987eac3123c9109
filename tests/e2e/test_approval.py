"""Plans, approvals and shadow rehearsals against the real API server, runner and PostgreSQL.

The example in examples/approval is applied as users apply it: additive changes run at once,
a destructive one waits for an approval of its exact plan hash, a wrong hash is ignored, and a
broken downgrade fails the rehearsal without touching the real database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import alerting
from dbtest import column_names, scalar
from testbed import kubetest
from testbed.kubetest import REPO, sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "approval" / "migration.yaml"


def example_documents(url: str, shadow_url: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"] = {"url": url, "shadow-url": shadow_url}
    return documents


def migrate_jobs(k8s: client.ApiClient, namespace: str, name: str) -> set[str]:
    return {
        job.metadata.name
        for job in kubetest.jobs_of(k8s, namespace, name)
        if (job.metadata.labels or {}).get("lockstep.dev/phase") != "plan"
    }


def annotate(k8s: client.ApiClient, namespace: str, name: str, plan_hash: str) -> None:
    kubetest.patch_migration(
        k8s, namespace, name, {"metadata": {"annotations": {"lockstep.dev/approve": plan_hash}}}
    )


def test_destructive_change_waits_for_the_approval_of_its_exact_plan(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
) -> None:
    kubetest.create_objects(k8s, namespace, example_documents(pg_url, other_pg_url))

    # V1, V2 are additive: planned inside the run, no approval asked.
    first = kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    assert first["status"]["appliedRevision"] == "2"
    assert first["status"]["plan"]["classification"] == "Additive"
    assert "legacy_code" in column_names(pg_url, "customers")
    # The rehearsal ran on the shadow database first, and left it at the target.
    table = kubetest.history_table(namespace, "shop-migrations")
    assert scalar(other_pg_url, f"SELECT max(version::int) FROM {table}") == 2

    kubetest.patch_migration(k8s, namespace, "shop", {"spec": {"target": "head"}})
    waiting = kubetest.wait_for_condition(
        k8s, namespace, "shop", "Ready", status="False", reason="AwaitingApproval"
    )
    plan = waiting["status"]["plan"]
    assert plan["classification"] == "Destructive"
    assert plan["migrations"] == ["V3__drop_legacy_code.sql"]
    finding = next(f for f in plan["findings"] if f["rule"] == "drop-column")
    assert (finding["file"], finding["line"]) == ("V3__drop_legacy_code.sql", 2)
    assert plan["hash"] in kubetest.condition(waiting, "Ready")["message"]  # type: ignore[index]
    assert kubetest.condition(waiting, "Stalled") is None
    jobs_before = migrate_jobs(k8s, namespace, "shop")

    # kstatus (Flux) reads it as InProgress: it waits, it does not fail.
    (verdict,) = alerting.kstatus_verdicts(alerting.kstatus(), [waiting])
    assert verdict["status"] == "InProgress"

    annotate(k8s, namespace, "shop", "0000000000000000")
    wait_for(
        "ApprovalIgnored event",
        lambda: "ApprovalIgnored" in kubetest.event_reasons(k8s, namespace, "shop"),
        timeout=30,
    )
    ignored = kubetest.get_migration(k8s, namespace, "shop")
    assert kubetest.condition(ignored, "Ready")["reason"] == "AwaitingApproval"  # type: ignore[index]
    assert migrate_jobs(k8s, namespace, "shop") == jobs_before
    assert "legacy_code" in column_names(pg_url, "customers")

    annotate(k8s, namespace, "shop", plan["hash"])
    done = kubetest.wait_for_condition(
        k8s, namespace, "shop", "Ready", reason="Succeeded", timeout=120
    )
    assert done["status"]["appliedRevision"] == "3"
    assert "legacy_code" not in column_names(pg_url, "customers")
    assert done["status"]["plan"]["hash"] == plan["hash"]


def test_broken_downgrade_fails_the_rehearsal_and_spares_the_real_database(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url, "shadow": other_pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "broken-undo",
        {
            "V1__create_carts.sql": "CREATE TABLE carts (id INTEGER PRIMARY KEY);\n",
            # The undo names a table that does not exist: the downgrade fails.
            "U1__create_carts.sql": "DROP TABLE cart;\n",
        },
    )
    shadow = {"shadowDatabase": {"urlSecretRef": {"name": "db", "key": "shadow"}}}
    kubetest.create_migration(k8s, namespace, sql_migration("carts", "broken-undo", verify=shadow))
    stalled = kubetest.wait_for_condition(
        k8s, namespace, "carts", "Ready", status="False", reason="RehearsalFailed", timeout=120
    )
    message = kubetest.condition(stalled, "Ready")["message"]  # type: ignore[index]
    assert "downgrade" in message.lower() and "cart" in message
    assert kubetest.condition(stalled, "Stalled") is not None
    assert stalled["status"]["lastRun"]["reason"] == "RehearsalFailed"
    # The real database was never touched: no table, no history.
    assert scalar(pg_url, "SELECT to_regclass('public.carts') IS NULL") is True
    history = kubetest.history_table(namespace, "broken-undo")
    assert scalar(pg_url, f"SELECT to_regclass('public.{history}') IS NULL") is True
    assert "other_pg" not in message and other_pg_url not in message
    # A broken downgrade cannot fix itself: one Job, no retry.
    assert len(migrate_jobs(k8s, namespace, "carts")) == 1


def test_plan_is_rendered_before_the_run_when_approval_is_always(
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
        "additive",
        {"V1__create_tags.sql": "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT);\n"},
    )
    kubetest.create_migration(k8s, namespace, sql_migration("tags", "additive", approval="Always"))
    waiting = kubetest.wait_for_condition(
        k8s, namespace, "tags", "Ready", status="False", reason="AwaitingApproval"
    )
    plan = waiting["status"]["plan"]
    assert plan["classification"] == "Additive"
    assert plan["statements"] == 1 and plan["summary"] == {"CREATE TABLE": 1}
    assert scalar(pg_url, "SELECT to_regclass('public.tags') IS NULL") is True
    (plan_job,) = kubetest.jobs_of(k8s, namespace, "tags")
    assert plan_job.metadata.name.endswith("-p0")
    kubetest.wait_for_events(k8s, namespace, "tags", {"Planned"})

    # A new spec makes a new plan: the old approval does not carry over.
    kubetest.replace_config_map(
        k8s,
        namespace,
        "additive",
        {"V1__create_tags.sql": "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);\n"},
    )
    annotate(k8s, namespace, "tags", plan["hash"])

    def new_plan() -> dict[str, Any] | None:
        body = kubetest.get_migration(k8s, namespace, "tags")
        current = (body.get("status") or {}).get("plan") or {}
        ready = kubetest.condition(body, "Ready") or {}
        if current.get("hash") not in (None, plan["hash"]) and (
            ready.get("reason") == "AwaitingApproval"
        ):
            return body
        return None

    replanned = wait_for("a new plan for the new spec", new_plan, timeout=90)
    assert scalar(pg_url, "SELECT to_regclass('public.tags') IS NULL") is True
    annotate(k8s, namespace, "tags", replanned["status"]["plan"]["hash"])
    kubetest.wait_for_condition(k8s, namespace, "tags", "Ready", reason="Succeeded", timeout=90)
    assert column_names(pg_url, "tags") == {"id", "name"}
