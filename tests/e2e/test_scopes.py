"""Several Lockstep instances in one cluster, each owning the DatabaseMigrations its selector
matches (tenants, or shards of a large fleet), each leading through its own Lease."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed import kubetest
from testbed.kubetest import sql_migration
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

SHARDS = {"payments": "team=payments", "search": "team in (search,ranking)"}


@pytest.fixture
def instances(
    operator: OperatorProcess,
    k8s: client.ApiClient,
    kubeconfig: Path,
    lease_namespace: str,
    tmp_path: Path,
) -> Iterator[dict[str, OperatorProcess]]:
    """Two scoped instances in place of the session operator (which would take everything)."""
    operator.stop()
    started: dict[str, OperatorProcess] = {}
    try:
        for shard, selector in SHARDS.items():
            started[shard] = OperatorProcess(
                kubeconfig,
                tmp_path / shard,
                lease_namespace,
                name=shard,
                extra_args=(
                    "--selector",
                    selector,
                    "--lease-name",
                    f"lockstep-{shard}",
                    "--webhook-configuration",
                    f"lockstep-gate-{shard}",
                ),
            )
            started[shard].start()
        for instance in started.values():
            instance.wait_leader()  # both lead: one Lease each
        yield started
    finally:
        for instance in started.values():
            instance.stop()
        admission = client.AdmissionregistrationV1Api(k8s)
        for shard in SHARDS:
            with contextlib.suppress(ApiException):
                admission.delete_mutating_webhook_configuration(f"lockstep-gate-{shard}")
        operator.start()
        operator.wait_leader()


def labelled(name: str, team: str) -> dict[str, object]:
    body = sql_migration(name, "schema")
    body["metadata"] = {"name": name, "labels": {"team": team}}
    return body


def test_each_instance_reconciles_only_what_its_selector_matches(
    instances: dict[str, OperatorProcess],
    k8s: client.ApiClient,
    namespace: str,
    pg_url: str,
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "schema", {"V1__a.sql": "CREATE TABLE a (id int);"})
    kubetest.create_migration(k8s, namespace, labelled("pay", "payments"))
    kubetest.create_migration(k8s, namespace, labelled("rank", "ranking"))
    kubetest.create_migration(k8s, namespace, labelled("stray", "billing"))  # nobody's

    kubetest.wait_for_condition(k8s, namespace, "pay", "Ready", reason="Succeeded")
    kubetest.wait_for_condition(k8s, namespace, "rank", "Ready", reason="Succeeded")
    time.sleep(3)  # an instance that wrongly took "stray" would have written its status by now
    stray = kubetest.get_migration(k8s, namespace, "stray")
    assert stray["status"] == {"observedGeneration": 0}  # the CRD's default: nobody looked
    assert kubetest.jobs_of(k8s, namespace, "stray") == []

    payments, search = instances["payments"].metrics(), instances["search"].metrics()
    assert f'name="pay",namespace="{namespace}"' in payments
    assert f'name="rank",namespace="{namespace}"' not in payments
    assert f'name="rank",namespace="{namespace}"' in search
    assert f'name="pay",namespace="{namespace}"' not in search
    assert "stray" not in payments + search
    for instance in instances.values():
        assert "acting on DatabaseMigrations matching: team" in instance.log()

    # A migration relabelled into the other shard moves with its label.
    kubetest.patch_migration(
        k8s, namespace, "stray", {"metadata": {"labels": {"team": "payments"}}}
    )
    kubetest.wait_for_condition(k8s, namespace, "stray", "Ready", reason="Succeeded")
    assert 'name="stray"' in instances["payments"].metrics()
