"""Sharded instances watch only their own Jobs: the labels a Job carries from its
DatabaseMigration, and the selectors the API server and the handlers filter Jobs and pods by
(docs/adr/0020-shard-scoped-jobs.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from fake_kube_api import FakeKubeApi
from lockstep.controller import reconcile, scope, watches
from lockstep.controller.cache import Cache
from lockstep.jobs import job_spec, naming
from lockstep.model import parse_spec

MANAGED = "app.kubernetes.io/managed-by=lockstep"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", MANAGED),
        ("shard=a", f"{MANAGED},shard=a"),
        ("team!=x", f"{MANAGED},team!=x"),
        ("shard in (b, a)", f"{MANAGED},shard in (a,b)"),
        ("shard notin (c)", f"{MANAGED},shard notin (c)"),
        ("owned,!legacy", f"{MANAGED},owned,!legacy"),
        # Lockstep sets this key on its Jobs itself: the requirement cannot be carried.
        ("app.kubernetes.io/name=x,shard=a", f"{MANAGED},shard=a"),
        ("app.kubernetes.io/managed-by=other", MANAGED),
    ],
)
def test_the_job_selector_is_lockstep_s_jobs_and_the_shard_s_requirements(
    text: str, expected: str
) -> None:
    assert scope.job_selector(scope.parse(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["shard=a", "team!=x", "shard in (a,b)", "shard notin (c,d)", "owned", "!legacy", "a=1,!b"],
)
def test_a_requirement_reads_back_as_itself(text: str) -> None:
    selector = scope.parse(text)
    assert scope.parse(scope.job_scope(selector).text).requirements == selector.requirements


@pytest.mark.parametrize(
    ("text", "migration_labels", "carried"),
    [
        ("", {"shard": "a"}, {}),
        ("shard=a", {"shard": "a", "team": "t"}, {"shard": "a"}),
        ("shard in (a,b)", {"shard": "b"}, {"shard": "b"}),
        # A missing label stays missing: it is what notin, != and !key select.
        ("shard notin (c)", {}, {}),
        ("shard notin (c)", {"shard": "d"}, {"shard": "d"}),
        ("!legacy", {"team": "t"}, {}),
        ("owned", {"owned": ""}, {"owned": ""}),
        ("app.kubernetes.io/name=x", {"app.kubernetes.io/name": "x"}, {}),
    ],
)
def test_a_job_carries_the_migration_s_values_of_the_selector_s_keys(
    text: str, migration_labels: dict[str, str], carried: dict[str, str]
) -> None:
    selector = scope.parse(text)
    assert scope.carried_labels(selector, migration_labels) == carried
    if selector.matches(migration_labels):
        # What the migration matched, its Job (with Lockstep's labels) matches too.
        labels = naming.job_labels(naming.Owner("m", "ns", "u"), "f" * 64, "db", carried)
        assert scope.job_scope(selector).matches(labels)


SPEC = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "shop-migrations"}},
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    "podTemplate": {"metadata": {"labels": {"shard": "z", "sidecar": "off"}}},
}


def test_the_job_and_its_pod_template_carry_the_shard_label_over_the_user_s() -> None:
    job = job_spec.build_job(
        naming.Owner("shop", "shop", "u-1"),
        parse_spec(SPEC),
        "a" * 64,
        naming.JobRequest(attempt=0, target="head"),
        "dbkey",
        "runner:1",
        {"shard": "a", "app.kubernetes.io/managed-by": "someone"},
    )
    job_labels = job["metadata"]["labels"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    for labels in (job_labels, pod_labels):
        assert labels["shard"] == "a"
        assert labels["app.kubernetes.io/managed-by"] == "lockstep"  # Lockstep's own wins
    assert pod_labels["sidecar"] == "off"


class ShopApi(FakeKubeApi):
    def __init__(self) -> None:
        super().__init__(
            secrets={("shop", "shop-db"): {"url": "postgresql://app:pw@db.example:5432/shop"}},
            config_maps={("shop", "shop-migrations"): {"V1__a.sql": "create table a (id int);"}},
        )


def shop(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {
            "name": "shop",
            "namespace": "shop",
            "uid": "u-1",
            "generation": 1,
            "labels": labels,
        },
        "spec": {k: v for k, v in SPEC.items() if k != "podTemplate"},
        "status": {},
    }


def reconcile_as(api: ShopApi, selector: str, body: dict[str, Any]) -> None:
    cache = Cache()
    cache.put_migration(body)
    reconciler = reconcile.Reconciler(
        cache=cache, emit=lambda *_: None, clock=lambda: datetime(2026, 12, 6, tzinfo=UTC), api=api
    )
    reconciler.scope = reconciler.actor.scope = scope.parse(selector)

    async def once() -> None:
        await reconciler.reconcile_once(("shop", "shop"), full=True)
        reconciler.scheduler.forget_all()

    asyncio.run(once())


def test_a_shard_creates_its_jobs_with_its_label() -> None:
    api = ShopApi()
    reconcile_as(api, "shard=a", shop({"shard": "a"}))
    (job,) = api.jobs.values()
    assert job["metadata"]["labels"]["shard"] == "a"
    assert api.labelled == []


def test_a_run_made_before_the_shard_label_is_labelled_when_adopted() -> None:
    """Upgraded, or sharding turned on, while a Job ran: the shard's filtered watch would never
    see it, and the 409 that adopts it labels it so that the watch does."""
    api = ShopApi()
    reconcile_as(api, "", shop({"shard": "a"}))  # an instance without a selector made it
    (name,) = api.jobs
    assert "shard" not in api.jobs[name]["metadata"]["labels"]
    reconcile_as(api, "shard=a", shop({"shard": "a"}))
    assert list(api.jobs) == [name]  # adopted, never a second run
    assert api.labelled == [(name, {"shard": "a"})]
    assert api.jobs[name]["metadata"]["labels"]["shard"] == "a"


def job_pod(shard: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "lockstep", "lockstep.dev/migration": "shop"}
    return {
        "metadata": {"name": "shop-1-x", "namespace": "shop", "labels": labels | {"shard": shard}}
    }


def test_a_shard_keeps_its_own_job_pods_and_drops_one_relabelled_to_another_shard() -> None:
    cache = Cache()
    reconciler = reconcile.Reconciler(cache=cache, emit=lambda *_: None)
    reconciler.job_scope = scope.job_scope(scope.parse("shard=a"))
    triggered: list[Any] = []
    reconciler.trigger = lambda key, full=False: triggered.append(key)  # type: ignore[method-assign]
    watches.pod_event(reconciler, None, job_pod("b"))
    assert not cache.has_pod(("shop", "shop-1-x"))
    assert triggered == []  # another shard's: no pass here
    watches.pod_event(reconciler, "MODIFIED", job_pod("a"))
    assert cache.has_pod(("shop", "shop-1-x"))
    assert triggered == [("shop", "shop")]
    watches.pod_event(reconciler, "MODIFIED", job_pod("b"))  # moved; the other shard labelled it
    assert not cache.has_pod(("shop", "shop-1-x"))
