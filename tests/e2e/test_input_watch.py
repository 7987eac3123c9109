"""Watched inputs (ADR 19): an edited or late ConfigMap is acted on at once, not at the resync.

Before issue 21 the operator read a ConfigMap only on a full pass, so an edit of a fixed-name
ConfigMap (GitOps with `disableNameSuffixHash`) started its run up to 10 minutes later (the
resync). The operator under test keeps the default resync (600 s): a run within the timeouts
below can only come from the ConfigMap watch.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from testbed import kubetest
from testbed.kubetest import sql_migration, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

# Far below the resync (600 s), with room for a loaded machine: Job, pod, SQL.
PROMPT_SECONDS = 60.0


def spec_hash(k8s: client.ApiClient, namespace: str, name: str) -> str:
    return str((kubetest.get_migration(k8s, namespace, name).get("status") or {}).get("specHash"))


def test_an_edited_config_map_starts_a_new_run_without_waiting_for_the_resync(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_config_map(k8s, namespace, "m", {"V1__t.sql": "CREATE TABLE t (id int);"})
    kubetest.create_migration(k8s, namespace, sql_migration("edited", "m"))
    kubetest.wait_for_condition(k8s, namespace, "edited", "Ready", reason="Succeeded")
    first = spec_hash(k8s, namespace, "edited")
    assert len(kubetest.jobs_of(k8s, namespace, "edited")) == 1

    edited = {"V1__t.sql": "CREATE TABLE t (id int);", "V2__u.sql": "CREATE TABLE u (id int);"}
    started = time.monotonic()
    client.CoreV1Api(k8s).patch_namespaced_config_map("m", namespace, {"data": edited})
    wait_for(
        "a second Job after the ConfigMap edit",
        lambda: len(kubetest.jobs_of(k8s, namespace, "edited")) == 2 or None,
        timeout=PROMPT_SECONDS,
    )
    # the edited file ran: the new run's end is recorded (not just its Job created)
    wait_for(
        "revision 2 applied",
        lambda: (
            (kubetest.get_migration(k8s, namespace, "edited").get("status") or {}).get(
                "appliedRevision"
            )
            == "2"
            or None
        ),
        timeout=PROMPT_SECONDS,
    )
    assert time.monotonic() - started < PROMPT_SECONDS
    kubetest.wait_for_condition(k8s, namespace, "edited", "Ready", reason="Succeeded")
    assert spec_hash(k8s, namespace, "edited") != first


def test_a_missing_config_map_keeps_its_condition_and_runs_once_created(
    k8s: client.ApiClient, namespace: str, operator: OperatorProcess, pg_url: str
) -> None:
    """With the ConfigMap watch, a miss is still read and reported as before: ConfigMapNotFound,
    Reconciling within its grace, not Stalled; once created, the run starts (the watch
    re-plans at once; the grace's own rechecks would too, a few seconds later)."""
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_migration(k8s, namespace, sql_migration("late", "late-files"))
    body = kubetest.wait_for_condition(
        k8s, namespace, "late", "Reconciling", reason="ConfigMapNotFound"
    )
    assert (
        kubetest.condition(body, "Stalled") is None
        or (kubetest.condition(body, "Stalled") or {}).get("status") != "True"
    )
    started = time.monotonic()
    kubetest.create_config_map(
        k8s, namespace, "late-files", {"V1__t.sql": "CREATE TABLE t (id int);"}
    )
    kubetest.wait_for_condition(
        k8s, namespace, "late", "Ready", reason="Succeeded", timeout=PROMPT_SECONDS
    )
    assert time.monotonic() - started < PROMPT_SECONDS
