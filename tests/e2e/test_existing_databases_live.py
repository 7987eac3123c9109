"""Existing databases through the operator on the real control plane (pod agent mode).

Two DatabaseMigrations on one database keep their own histories; spec.baseline adopts a
populated database; spec.versionTable moves the version table of tool sql, Alembic (scripts
from a ConfigMap) and the real Flyway (the example image, tools/toolchains/install.sh).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from sqlalchemy.engine import make_url

from dbtest import execute
from dbtest import rows as query
from lockstep import version_tables
from lockstep.tools.version_table import VersionTableRef
from testbed import kubetest
from testbed.kubetest import REPO, sql_migration
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 300.0
FIXTURES = REPO / "tests" / "fixtures"
SHOP = {p.name: p.read_text() for p in sorted((FIXTURES / "sql" / "shop").glob("*.sql"))}
BILLING = {
    "V1__invoices.sql": "CREATE TABLE invoices (id INTEGER PRIMARY KEY);\n",
    "V2__invoice_total.sql": "ALTER TABLE invoices ADD COLUMN total INTEGER;\n",
}


def ready(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return kubetest.wait_ready(api, namespace, name, timeout=RUN_TIMEOUT)


def sql_resource(
    api: client.ApiClient, namespace: str, name: str, files: dict[str, str], **spec: Any
) -> None:
    kubetest.create_config_map(api, namespace, name, files)
    kubetest.create_migration(api, namespace, sql_migration(name, **spec))


def test_two_migrations_on_one_database_both_reach_ready_with_their_own_histories(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    sql_resource(k8s, namespace, "orders", SHOP)
    sql_resource(k8s, namespace, "billing", BILLING)  # its V1 is not the shop's V1
    orders, billing = ready(k8s, namespace, "orders"), ready(k8s, namespace, "billing")
    assert (orders["status"]["appliedRevision"], billing["status"]["appliedRevision"]) == ("3", "2")
    for name, expected in (("orders", ["1", "2", "3"]), ("billing", ["1", "2"])):
        table = kubetest.history_table(namespace, name)
        found = sorted(str(v) for (v,) in query(pg_url, f"SELECT version FROM {table}"))
        assert found == expected, name
    owners = dict(query(pg_url, "SELECT owner, table_name FROM lockstep_version_table_owners"))
    assert owners == {
        f"ConfigMap {namespace}/orders": kubetest.history_table(namespace, "orders"),
        f"ConfigMap {namespace}/billing": kubetest.history_table(namespace, "billing"),
    }
    for body in (orders, billing):
        reasons = [c.get("reason") for c in body["status"].get("conditions") or []]
        assert "ChecksumMismatch" not in reasons


def test_two_migrations_naming_one_table_refuse_the_second_by_name(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    sql_resource(k8s, namespace, "orders", SHOP, versionTable={"name": "shared_history"})
    ready(k8s, namespace, "orders")
    sql_resource(k8s, namespace, "billing", BILLING, versionTable={"name": "shared_history"})
    body = kubetest.wait_for_condition(
        k8s, namespace, "billing", "Stalled", reason="VersionTableInUse", timeout=RUN_TIMEOUT
    )
    message = str(kubetest.condition(body, "Stalled")["message"])  # type: ignore[index]
    assert f"the migrations of ConfigMap {namespace}/orders are recorded in" in message
    assert "spec.versionTable.name" in message
    assert not query(
        pg_url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'invoices'"
    )


def test_a_baseline_adopts_a_populated_database(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    # The schema of V1 and V2 exists already, made without Lockstep.
    for name in ("V1__create_customers.sql", "V2__create_orders.sql"):
        execute(pg_url, *[s for s in SHOP[name].split(";\n") if s.strip()])
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    sql_resource(k8s, namespace, "shop", SHOP, baseline={"version": "2"})
    status = ready(k8s, namespace, "shop")["status"]
    assert status["appliedRevision"] == "3"
    assert status["lastRun"]["message"].startswith(
        "baselined 2 existing migration(s) up to 2 (recorded, not run); applied 3"
    )
    runs = sorted(str(v) for (v,) in query(pg_url, "SELECT version FROM migration_log"))
    assert runs == ["1", "2", "3"]  # each file's statements ran once: V1, V2 by hand, V3 here
    table = kubetest.history_table(namespace, "shop")
    flags = dict(query(pg_url, f"SELECT version, baselined FROM {table}"))
    assert {str(k): bool(v) for k, v in flags.items()} == {"1": True, "2": True, "3": False}


def test_sql_and_alembic_in_a_version_table_of_their_own(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
) -> None:
    execute(pg_url, "CREATE SCHEMA audit")
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_secret(k8s, namespace, "alembic-db", {"url": other_pg_url})
    sql_resource(k8s, namespace, "shop", SHOP, versionTable={"schema": "audit", "name": "shop"})
    scripts = FIXTURES / "alembic" / "shop"
    files = {p.name: p.read_text() for p in [scripts / "env.py", *scripts.glob("versions/*.py")]}
    kubetest.create_config_map(k8s, namespace, "shop-alembic", files)
    alembic = sql_migration(
        "shop-alembic",
        url_from="alembic-db",
        versionTable={"name": "shop_alembic_version"},
    )
    alembic["spec"]["tool"] = "alembic"
    kubetest.create_migration(k8s, namespace, alembic)
    assert ready(k8s, namespace, "shop")["status"]["appliedRevision"] == "3"
    assert ready(k8s, namespace, "shop-alembic")["status"]["appliedRevision"] == "a1000003"
    assert version_tables.read_revision("sql", pg_url, VersionTableRef("shop", "audit")) == "3"
    ref = VersionTableRef("shop_alembic_version")
    assert version_tables.read_revision("alembic", other_pg_url, ref) == "a1000003"
    assert version_tables.read_revision("alembic", other_pg_url) is None  # no alembic_version


def flyway_documents(name: str, pg_url: str, **spec: Any) -> list[dict[str, Any]]:
    """The Flyway example (the real Flyway on the pod agent) as ``name``, on ``pg_url``."""
    text = (REPO / "examples/flyway-postgresql/migration.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(text) if d]
    url = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    for document in documents:
        document["metadata"].pop("namespace", None)
        if document["kind"] == "Secret":
            document["metadata"]["name"] = f"{name}-db"
            document["stringData"] = {"url": url}
        else:
            document["metadata"]["name"] = name
            document["spec"]["database"]["urlSecretRef"]["name"] = f"{name}-db"
            document["spec"].update(spec)
    return documents


def test_flyway_records_in_the_version_table_of_the_spec(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    toolchains: Path | None,
    pg_url: str,
) -> None:
    version_table = {"schema": "flyway", "name": "shop_history"}
    kubetest.create_objects(
        k8s, namespace, flyway_documents("shop", pg_url, versionTable=version_table)
    )
    status = ready(k8s, namespace, "shop")["status"]
    assert status["appliedRevision"] == "2"  # read from flyway.shop_history by the operator
    ref = VersionTableRef("shop_history", "flyway")
    assert version_tables.read_revision("flyway", pg_url, ref) == "2"
    assert version_tables.read_revision("flyway", pg_url) is None  # no public.flyway_schema_history


def test_a_second_flyway_on_the_same_table_is_refused_before_flyway_runs(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    toolchains: Path | None,
    pg_url: str,
) -> None:
    kubetest.create_objects(k8s, namespace, flyway_documents("orders", pg_url))
    ready(k8s, namespace, "orders")
    kubetest.create_objects(k8s, namespace, flyway_documents("billing", pg_url))
    body = kubetest.wait_for_condition(
        k8s, namespace, "billing", "Stalled", reason="VersionTableInUse", timeout=RUN_TIMEOUT
    )
    message = str(kubetest.condition(body, "Stalled")["message"])  # type: ignore[index]
    assert f"the migrations of DatabaseMigration {namespace}/orders are recorded in" in message
    assert "public.flyway_schema_history" in message and "spec.versionTable.name" in message
    installed = query(pg_url, "SELECT count(*) FROM flyway_schema_history")
    assert installed == [(2,)]  # billing's Flyway never ran
    # Its own schema (Flyway's defaultSchema: history and tables) separates it.
    kubetest.create_objects(
        k8s, namespace, flyway_documents("billing2", pg_url, versionTable={"schema": "billing"})
    )
    assert ready(k8s, namespace, "billing2")["status"]["appliedRevision"] == "2"
    ref = VersionTableRef("flyway_schema_history", "billing")
    assert version_tables.read_revision("flyway", pg_url, ref) == "2"
