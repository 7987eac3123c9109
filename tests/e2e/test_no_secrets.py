"""Nothing Lockstep writes or exports during a run may contain the database password or URL."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


def test_logs_events_status_and_metrics_hold_no_database_secret(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    password = urlsplit(pg_url).password
    assert password
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "m",
        {"V1__ok.sql": "CREATE TABLE t (id int);", "V2__bad.sql": "SELECT * FROM missing_table;"},
    )
    body = {
        "metadata": {"name": "leaky"},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "m"}},
            "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
            "retry": {"limit": 1, "backoffSeconds": 1},
        },
    }
    kubetest.create_migration(k8s, namespace, body)
    final = kubetest.wait_for_condition(
        k8s, namespace, "leaky", "Stalled", reason="RetriesExhausted", timeout=90
    )

    kubetest.wait_for_events(k8s, namespace, "leaky", {"Stalled"})  # posted after the status
    events = kubetest.events_for(k8s, namespace, "leaky")
    everything = {
        "operator log": operator.log(),
        "status": json.dumps(final["status"]),
        "events": json.dumps([(e.reason, e.message) for e in events]),
        "metrics": operator.metrics(),
        "jobs": json.dumps(
            [
                client.ApiClient().sanitize_for_serialization(j)
                for j in kubetest.jobs_of(k8s, namespace, "leaky")
            ]
        ),
    }
    assert "missing_table" in everything["status"]  # the run really failed and was recorded
    forbidden = {
        "password": password,
        "url": pg_url,
        "url (base64)": base64.b64encode(pg_url.encode()).decode(),
    }
    leaks = [
        f"{what} in {where}"
        for where, text in everything.items()
        for what, secret in forbidden.items()
        if secret in text
    ]
    assert not leaks, leaks
