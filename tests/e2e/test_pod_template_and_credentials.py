"""Issue 20, sections 1 and 2, on the real control plane: spec.podTemplate reaches the migration
pod (Istio-style annotations, Lockstep's default mesh opt-out, labels, an extra volume), and a
CloudNativePG-style split Secret (host, port, dbname, user, password, uri) migrates a database
whose password holds ``@ : / % # ? &`` and a space, with the password nowhere in status, Events,
Jobs, pods, metrics or the operator's log.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import yaml
from kubernetes import client
from sqlalchemy.engine import make_url

from testbed import kubetest
from testbed.kubetest import REPO
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

ISTIO_INJECT = "sidecar.istio.io/inject"
HOSTILE_PASSWORD = "p@ss:w/rd%41#frag?x=1&y 2"  # %41 must stay "%41", not become "A"


def _pods_of(api: client.ApiClient, namespace: str, migration: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"lockstep.dev/migration={migration}"
    )
    return list(pods.items)


def _container_logs(api: client.ApiClient, namespace: str, pods: list[client.V1Pod]) -> str:
    core = client.CoreV1Api(api)
    return "\n".join(
        core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container.name)
        for pod in pods
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]
    )


def _files(name: str) -> dict[str, str]:
    return {"V1__create_orders.sql": f"CREATE TABLE {name}_orders (id int PRIMARY KEY);"}


def test_pod_template_labels_annotations_and_volumes_reach_the_pod(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_secret(k8s, namespace, "other", {"url": other_pg_url})
    kubetest.create_config_map(k8s, namespace, "meshed", _files("meshed"))
    kubetest.create_config_map(k8s, namespace, "default", _files("default"))
    istio_config = '{"holdApplicationUntilProxyStarts": true}'
    meshed = kubetest.sql_migration(
        "meshed",
        podTemplate={
            "metadata": {
                "labels": {"azure.workload.identity/use": "true", "team": "shop"},
                "annotations": {ISTIO_INJECT: "true", "proxy.istio.io/config": istio_config},
            },
            "spec": {
                "volumes": [{"name": "work", "emptyDir": {}}],
                "terminationGracePeriodSeconds": 45,
            },
        },
        volumeMounts=[{"name": "work", "mountPath": "/work-dir"}],
        securityContext={"readOnlyRootFilesystem": False},
    )
    kubetest.create_migration(k8s, namespace, meshed)
    kubetest.create_migration(k8s, namespace, kubetest.sql_migration("default", url_from="other"))

    for name in ("meshed", "default"):
        kubetest.wait_for_condition(k8s, namespace, name, "Ready", reason="Succeeded")

    (pod,) = _pods_of(k8s, namespace, "meshed")
    annotations, labels = pod.metadata.annotations or {}, pod.metadata.labels or {}
    assert annotations[ISTIO_INJECT] == "true"  # the user's choice replaces Lockstep's default
    assert annotations["proxy.istio.io/config"] == istio_config
    assert labels["azure.workload.identity/use"] == "true"
    assert labels["team"] == "shop"
    assert labels["lockstep.dev/migration"] == "meshed"  # Lockstep's labels are still there
    assert pod.spec.termination_grace_period_seconds == 45
    assert "work" in {v.name for v in pod.spec.volumes}
    migrate = next(c for c in pod.spec.containers if c.name == "migrate")
    assert "/work-dir" in {m.mount_path for m in migrate.volume_mounts}
    assert migrate.security_context.read_only_root_filesystem is False
    assert migrate.security_context.run_as_non_root is True  # the rest stays restricted
    assert migrate.security_context.capabilities.drop == ["ALL"]

    (plain,) = _pods_of(k8s, namespace, "default")
    assert (plain.metadata.annotations or {})[ISTIO_INJECT] == "false"  # Lockstep's default
    plain_migrate = next(c for c in plain.spec.containers if c.name == "migrate")
    assert plain_migrate.security_context.read_only_root_filesystem is True


@pytest.fixture
def cnpg_database(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    """A database owned by its own role, whose password holds every URL delimiter: the keys of
    CloudNativePG's `<cluster>-app` Secret (host, port, dbname, user, password, uri)."""
    suffix = uuid.uuid4().hex[:10]
    user, name = f"app_{suffix}", f"lockstep_cnpg_{suffix}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(user), psycopg.sql.Literal(HOSTILE_PASSWORD)
            )
        )
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
    admin_url = make_url(postgres_admin_url)
    host, port = str(admin_url.host or "127.0.0.1"), str(admin_url.port or 5432)
    uri = f"postgresql://{user}:{quote(HOSTILE_PASSWORD, safe='')}@{host}:{port}/{name}"
    try:
        yield {
            "host": host,
            "port": port,
            "dbname": name,
            "user": user,
            "password": HOSTILE_PASSWORD,
            "uri": uri,
        }
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{user}"')


def _connection_from(secret: str) -> dict[str, Any]:
    keys = {"host": "host", "port": "port", "database": "dbname", "username": "user"}
    parts: dict[str, Any] = {
        field: {"secretKeyRef": {"name": secret, "key": key}} for field, key in keys.items()
    }
    parts["password"] = {"secretKeyRef": {"name": secret, "key": "password"}}
    parts["parameters"] = {"connect_timeout": "10"}
    return parts


def test_cloudnativepg_style_split_secret_migrates_and_leaks_nothing(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    cnpg_database: dict[str, str],
) -> None:
    kubetest.create_secret(k8s, namespace, "shop-db-app", cnpg_database)
    kubetest.create_config_map(
        k8s,
        namespace,
        "shop",
        {
            "V1__create_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY);",
            "V2__create_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY);",
        },
    )
    body = {
        "metadata": {"name": "shop"},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "shop"}},
            "database": {"engine": "postgresql", "connection": _connection_from("shop-db-app")},
        },
    }
    kubetest.create_migration(k8s, namespace, body)
    final = kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    assert final["status"]["appliedRevision"] == "2"

    # The tables exist, made by the application's own role through the composed URL.
    with psycopg.connect(
        host=cnpg_database["host"],
        port=int(cnpg_database["port"]),
        dbname=cnpg_database["dbname"],
        user=cnpg_database["user"],
        password=HOSTILE_PASSWORD,
    ) as connection:
        owners = connection.execute(
            "SELECT tablename, tableowner FROM pg_tables WHERE tablename IN ('customers', 'orders')"
        ).fetchall()
    assert sorted(owners) == [
        ("customers", cnpg_database["user"]),
        ("orders", cnpg_database["user"]),
    ]

    kubetest.wait_for_events(k8s, namespace, "shop", {"Succeeded"})  # posted after the status
    jobs = kubetest.jobs_of(k8s, namespace, "shop")
    pods = _pods_of(k8s, namespace, "shop")
    serialize = client.ApiClient().sanitize_for_serialization
    everything = {
        "operator log": operator.log(),
        "status": json.dumps(final["status"]),
        "events": json.dumps(
            [(e.reason, e.message) for e in kubetest.events_for(k8s, namespace, "shop")]
        ),
        "metrics": operator.metrics(),
        "jobs": json.dumps([serialize(j) for j in jobs]),
        "pods": json.dumps([serialize(p) for p in pods]),
        "container logs": _container_logs(k8s, namespace, pods),
    }
    assert "applied" in everything["container logs"].lower()  # the logs were really read
    # The Job carries references to the Secret's keys, never a value.
    job_text = everything["jobs"]
    assert '"LOCKSTEP_DB_PASSWORD"' in job_text and '"key": "password"' in job_text
    forbidden = {
        "password": HOSTILE_PASSWORD,
        "password (encoded)": quote(HOSTILE_PASSWORD, safe=""),
        "uri": cnpg_database["uri"],
        "password (base64)": base64.b64encode(HOSTILE_PASSWORD.encode()).decode(),
    }
    leaks = [
        f"{what} in {where}"
        for where, text in everything.items()
        for what, secret in forbidden.items()
        if secret in text
    ]
    assert not leaks, leaks


def test_a_missing_key_of_the_split_secret_names_the_field(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, cnpg_database: dict[str, str]
) -> None:
    partial = {k: v for k, v in cnpg_database.items() if k != "password"}
    kubetest.create_secret(k8s, namespace, "shop-db-app", partial)
    kubetest.create_config_map(k8s, namespace, "shop", _files("shop"))
    body = {
        "metadata": {"name": "shop"},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "shop"}},
            "database": {"engine": "postgresql", "connection": _connection_from("shop-db-app")},
        },
    }
    kubetest.create_migration(k8s, namespace, body)
    final = kubetest.wait_for_condition(
        k8s, namespace, "shop", "Ready", status="False", reason="SecretNotFound"
    )
    message = kubetest.condition(final, "Ready")["message"]  # type: ignore[index]
    assert "spec.database.connection.password" in message
    assert "'password'" in message and "shop-db-app" in message
    assert not kubetest.jobs_of(k8s, namespace, "shop")  # nothing ran without the password


@pytest.mark.parametrize(
    ("folder", "tables"),
    [
        # The URL reaches the tool as $DATABASE_URL from the `lockstep dburl --format url` file.
        ("knex-postgresql", {"customers", "orders"}),
        # The parts become FLYWAY_URL/USER/PASSWORD through the same init container.
        ("flyway-postgresql", {"customers", "orders"}),
    ],
)
def test_a_tool_in_its_image_gets_the_url_composed_from_the_split_secret(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    cnpg_database: dict[str, str],
    toolchains: object,
    folder: str,
    tables: set[str],
) -> None:
    documents = [
        d
        for d in yaml.safe_load_all((REPO / "examples" / folder / "migration.yaml").read_text())
        if d
    ]
    (migration,) = [d for d in documents if d["kind"] == "DatabaseMigration"]
    migration["metadata"].pop("namespace", None)
    migration["spec"]["database"] = {
        "engine": "postgresql",
        "connection": _connection_from("shop-db-app"),
    }
    kubetest.create_secret(k8s, namespace, "shop-db-app", cnpg_database)
    kubetest.create_migration(k8s, namespace, migration)
    name = migration["metadata"]["name"]
    kubetest.wait_for_condition(k8s, namespace, name, "Ready", reason="Succeeded", timeout=300)

    with psycopg.connect(
        host=cnpg_database["host"],
        port=int(cnpg_database["port"]),
        dbname=cnpg_database["dbname"],
        user=cnpg_database["user"],
        password=HOSTILE_PASSWORD,
    ) as connection:
        found = {r[0] for r in connection.execute("SELECT tablename FROM pg_tables")}
    assert tables <= found
    (job,) = kubetest.jobs_of(k8s, namespace, name)
    pod = job.spec.template.spec
    assert pod.init_containers[0].name == "lockstep-env"
    serialized = json.dumps(client.ApiClient().sanitize_for_serialization(job))
    assert HOSTILE_PASSWORD not in serialized
    assert quote(HOSTILE_PASSWORD, safe="") not in serialized
