"""Gather and act with a fake API passed in: one Job, one status write, Events, no secrets."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fake_kube_api import FakeKubeApi
from lockstep import timestamps
from lockstep.controller import act, reconcile
from lockstep.controller.cache import Cache
from lockstep.planning.facts import Event

URL = "postgresql://app:s3cret-pass@db.example:5432/shop"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class FakeApi(FakeKubeApi):
    """The shop's Secret and ConfigMap; passed to the Reconciler, never patched in."""

    def __init__(self) -> None:
        super().__init__(
            secrets={("shop", "shop-db"): {"url": URL}},
            config_maps={("shop", "shop-migrations"): {"V1__init.sql": "create table t (id int);"}},
        )


def migration(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop", "namespace": "shop", "uid": "u-1", "generation": 1},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "shop-migrations"}},
            "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
        },
        "status": status,
    }


def run(
    api: FakeApi, body: dict[str, Any], cache: Cache | None = None, full: bool = True
) -> list[Event]:
    events: list[Event] = []
    cache = cache or Cache()
    cache.put_migration(body)
    reconciler = reconcile.Reconciler(
        cache=cache, emit=lambda _, e: events.append(e), clock=lambda: NOW, api=api
    )

    async def once() -> None:
        await reconciler.reconcile_once(("shop", "shop"), full=full)
        reconciler.scheduler.forget_all()

    asyncio.run(once())
    return events


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def test_first_pass_creates_one_job_and_writes_status_once(api: FakeApi) -> None:
    events = run(api, migration())
    assert len(api.jobs) == 1
    (job,) = api.jobs.values()
    assert job["metadata"]["labels"]["lockstep.dev/database"]
    assert len(api.patches) == 1
    assert api.patches[0]["activeJob"]["name"] == job["metadata"]["name"]
    assert [e.reason for e in events] == ["JobCreated"]


def test_a_second_pass_adopts_instead_of_creating_again(api: FakeApi) -> None:
    run(api, migration())
    events = run(api, migration())
    assert len(api.jobs) == 1
    assert events == []  # the 409 means the run exists: no second JobCreated


def test_a_settled_status_is_not_written_again(api: FakeApi) -> None:
    run(api, migration())
    written = api.patches[-1]
    api.patches.clear()
    cache = Cache()
    cache.put_job(next(iter(api.jobs.values())))
    run(api, migration(**written), cache)
    assert api.patches == []


def with_timeouts(body: dict[str, Any], **timeouts: Any) -> dict[str, Any]:
    body["spec"]["timeouts"] = timeouts
    return body


def conditions_of(patch: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch["conditions"]}


def test_a_missing_secret_is_waited_for_not_stalled_within_its_grace(api: FakeApi) -> None:
    """A GitOps sync or ExternalSecrets may create the Secret moments later: Reconciling, so
    Argo CD shows Progressing and Flux keeps waiting, not Degraded / failed."""
    api.secrets.clear()
    events = run(api, migration())
    assert api.jobs == {}
    found = conditions_of(api.patches[0])
    assert "Stalled" not in found
    assert found["Reconciling"]["reason"] == "SecretNotFound"
    assert found["Ready"]["status"] == "False"
    assert "shop-db" in found["Ready"]["message"]
    assert "300s left before this counts as stalled" in found["Ready"]["message"]
    assert api.patches[0]["inputMissingSince"] == timestamps.isoformat(NOW)
    assert "Stalled" not in [e.reason for e in events]


def test_a_missing_secret_stalls_once_its_grace_has_run_out(api: FakeApi) -> None:
    api.secrets.clear()
    since = timestamps.isoformat(NOW - timedelta(seconds=301))
    events = run(api, migration(inputMissingSince=since))
    found = conditions_of(api.patches[0])
    assert found["Stalled"]["reason"] == "SecretNotFound"
    assert "Reconciling" not in found
    assert [e.reason for e in events] == ["Stalled"]


def test_missing_config_map_stalls_at_once_with_no_grace(api: FakeApi) -> None:
    api.config_maps.clear()
    run(api, with_timeouts(migration(), missingInputSeconds=0))
    assert conditions_of(api.patches[0])["Stalled"]["reason"] == "ConfigMapNotFound"


def test_the_wait_for_a_missing_input_ends_when_it_appears(api: FakeApi) -> None:
    since = timestamps.isoformat(NOW - timedelta(seconds=30))
    run(api, migration(inputMissingSince=since))
    assert api.patches[0]["inputMissingSince"] is None  # dropped from the status
    assert len(api.jobs) == 1


def test_editing_the_config_map_changes_the_job_name(api: FakeApi) -> None:
    run(api, migration())
    api.config_maps[("shop", "shop-migrations")] = {"V1__init.sql": "create table t (id bigint);"}
    run(api, migration())
    assert len(api.jobs) == 2


def test_the_database_url_never_reaches_status_events_or_the_job(api: FakeApi) -> None:
    events = run(api, migration())
    visible = repr(api.patches) + repr(events) + repr(api.jobs)
    assert "s3cret-pass" not in visible
    assert base64.b64encode(b"s3cret-pass").decode() not in visible


def test_status_patch_nulls_dropped_keys() -> None:
    patch = act.status_patch(
        {"activeJob": {"name": "j"}, "failures": 1}, {"failures": 1, "appliedRevision": "2"}
    )
    assert patch == {"activeJob": None, "appliedRevision": "2"}
    assert act.status_patch({"a": 1}, {"a": 1}) == {}


def test_job_and_pod_events_on_a_settled_migration_read_no_secret_or_config_map(
    api: FakeApi,
) -> None:
    run(api, migration())
    written = api.patches[-1]
    api.reads.clear()
    cache = Cache()
    cache.put_job(next(iter(api.jobs.values())))
    run(api, migration(**written), cache, full=False)
    assert api.reads == []
