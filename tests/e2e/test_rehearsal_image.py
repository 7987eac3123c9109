"""Shadow rehearsal of a tool in an image (Knex): init containers run the real tool against the
emptied shadow database — up, down, up — before the lock sidecar and the real run."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client
from sqlalchemy.engine import make_url

from dbtest import scalar
from testbed import kubetest
from testbed.kubetest import REPO
from testbed.operatorprocess import OperatorProcess

# Knex runs from the test bed's toolchain cache: every test here needs it installed first.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("toolchains")]

EXAMPLE = REPO / "examples" / "knex-postgresql" / "migration.yaml"
HEAD = "20240102120000_create_orders.js"
# Node and Knex start three times for the rehearsal, then once more for the run.
TIMEOUT = 300.0


def knex_with_shadow(url: str, shadow_url: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for document in documents:
        if document["kind"] == "Secret":
            document["stringData"] = {"url": url, "shadow": shadow_url}
        else:
            secret = document["spec"]["database"]["urlSecretRef"]["name"]
            shadow_ref = {"name": secret, "key": "shadow"}
            document["spec"]["verify"] = {"shadowDatabase": {"urlSecretRef": shadow_ref}}
    return documents


def init_containers(k8s: client.ApiClient, namespace: str) -> list[str]:
    (job,) = kubetest.jobs_of(k8s, namespace, "knex-postgresql")
    return [c.name for c in job.spec.template.spec.init_containers]


def test_knex_is_rehearsed_on_the_shadow_before_the_real_run(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
) -> None:
    kubetest.create_objects(k8s, namespace, knex_with_shadow(pg_url, other_pg_url))
    body = kubetest.wait_for_condition(
        k8s, namespace, "knex-postgresql", "Ready", reason="Succeeded", timeout=TIMEOUT
    )
    assert body["status"]["appliedRevision"] == HEAD
    assert init_containers(k8s, namespace) == [
        "rehearse-1-reset",
        "rehearse-2-upgrade",
        "rehearse-3-downgrade",
        "rehearse-4-upgrade",
        "lockstep-lock",
        "lockstep-claim",  # once the lock is held: the version table is this resource's
    ]
    # The shadow went up, down to base and up again: both migrations recorded once.
    assert scalar(other_pg_url, "SELECT count(*) FROM knex_migrations") == 2
    assert scalar(pg_url, "SELECT max(name) FROM knex_migrations") == HEAD


def test_a_failed_rehearsal_step_stops_the_run_before_the_real_database(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
) -> None:
    # A shadow that does not exist: the reset step fails, nothing else runs.
    missing = make_url(pg_url).set(database="lockstep_no_such_shadow")
    shadow_url = missing.render_as_string(hide_password=False)
    kubetest.create_objects(k8s, namespace, knex_with_shadow(pg_url, shadow_url))
    body = kubetest.wait_for_condition(
        k8s,
        namespace,
        "knex-postgresql",
        "Ready",
        status="False",
        reason="RehearsalFailed",
        timeout=TIMEOUT,
    )
    message = kubetest.condition(body, "Ready")["message"]  # type: ignore[index]
    assert "rehearsal step 1 of 4 (rehearse-1-reset" in message
    assert "the real database was not touched" in message
    assert "lockstep-test" not in message  # the password
    assert kubetest.condition(body, "Stalled") is not None
    assert scalar(pg_url, "SELECT to_regclass('public.knex_migrations') IS NULL") is True
