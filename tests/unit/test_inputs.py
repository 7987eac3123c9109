"""The input cache (controller/inputs.py, ADR 19): passes plan from watched ConfigMaps and Secrets.

A full pass whose ConfigMap and Secret the watches delivered makes no GET; a miss still reads
(a missing input keeps its condition and grace); an edit re-plans the migrations that read it;
only Secrets a migration reads are kept; a GET racing a watch event is not kept.
(A new leader's Jobs and pods are cached before any pass: tests/unit/test_priming.py.)
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import kopf
import pytest
from test_reconcile import NOW, URL, FakeApi, conditions_of, migration

from lockstep import kube
from lockstep.controller import handlers, inputs, reconcile, watches
from lockstep.controller.cache import Cache
from lockstep.model import content_digest

KEY = ("shop", "shop")
FILES = {"V1__init.sql": "create table t (id int);"}


def config_map(data: dict[str, str], name: str = "shop-migrations") -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": data}


def secret(data: dict[str, str], name: str = "shop-db") -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": "shop"}, "data": encoded}


class Bed:
    def __init__(self, api: FakeApi, secrets_watched: bool = True) -> None:
        self.api = api
        self.cache = Cache()
        self.reconciler = reconcile.Reconciler(
            cache=self.cache, emit=lambda _, e: None, clock=lambda: NOW, api=api
        )
        self.inputs = self.reconciler.gatherer.inputs
        self.inputs.secrets_watched = secrets_watched
        self.triggered: list[tuple[tuple[str, str], bool]] = []
        self.reconciler.scheduler.trigger = lambda key, full=False: self.triggered.append(  # type: ignore[method-assign]
            (key, full)
        )

    def put(self, body: dict[str, Any]) -> None:
        self.cache.put_migration(body)

    def gather(self, body: dict[str, Any]) -> Any:
        return asyncio.run(self.reconciler.gatherer.gather(body))

    def run(self, key: tuple[str, str] = KEY) -> None:
        async def once() -> None:
            await self.reconciler.reconcile_once(key, full=True)
            self.reconciler.scheduler.forget_all()

        asyncio.run(once())


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def test_a_full_pass_on_watched_inputs_reads_nothing_and_hashes_the_same(api: FakeApi) -> None:
    read = Bed(FakeApi()).gather(migration())  # the old way: GETs
    bed = Bed(api)
    watches.config_map_event(bed.reconciler, None, config_map(FILES))
    watches.secret_event(bed.reconciler, None, secret({"url": URL}))
    bed.gather(migration())  # the first reader of the Secret keeps it: one GET
    api.reads.clear()
    gathered = bed.gather(migration())
    assert api.reads == []
    assert gathered.url == URL
    assert gathered.observed.spec_hash == read.observed.spec_hash
    assert bed.inputs.config_map_digest("shop", "shop-migrations") == content_digest(FILES)


def test_a_new_migration_on_a_kept_secret_creates_its_job_without_a_get(api: FakeApi) -> None:
    """The bench's case: one Secret with a key per database, a migration per key."""
    api.secrets[("shop", "shop-db")]["other"] = URL.replace("/shop", "/other")
    bed = Bed(api)
    watches.config_map_event(bed.reconciler, None, config_map(FILES))
    first = migration()
    bed.put(first)
    bed.run()
    assert api.reads == ["Secret shop-db"]  # one GET of the whole Secret, kept from then on
    second = migration()
    second["metadata"] = {**second["metadata"], "name": "other", "uid": "u-2"}
    second["spec"]["database"]["urlSecretRef"]["key"] = "other"
    bed.put(second)
    api.reads.clear()
    bed.run(("shop", "other"))
    assert api.reads == []
    assert len(api.created) == 2


def test_without_the_secret_watch_every_secret_read_is_a_get(api: FakeApi) -> None:
    bed = Bed(api, secrets_watched=False)
    for _ in range(2):
        bed.gather(migration())
    assert api.reads.count("Secret shop-db") == 2
    assert bed.inputs.secret_data("shop", "shop-db") is None


def test_a_missing_config_map_is_read_and_keeps_its_condition_and_grace(api: FakeApi) -> None:
    api.config_maps.clear()
    bed = Bed(api)
    watches.config_map_event(bed.reconciler, None, config_map(FILES, name="unrelated"))
    bed.put(migration())
    bed.run()
    assert "ConfigMap shop-migrations" in api.reads  # a miss is never taken for absent
    found = conditions_of(api.patches[0])
    assert found["Reconciling"]["reason"] == "ConfigMapNotFound"
    assert "Stalled" not in found
    assert api.jobs == {}
    # It appears: the migration is re-planned at once, not at the resync.
    watches.config_map_event(bed.reconciler, "ADDED", config_map(FILES))
    assert bed.triggered == [(KEY, True)]


def test_a_missing_secret_key_in_a_kept_secret_is_asked_of_the_api(api: FakeApi) -> None:
    bed = Bed(api)
    watches.secret_event(bed.reconciler, None, secret({"url": URL}))
    bed.gather(migration())
    body = migration()
    body["spec"]["database"]["urlSecretRef"]["key"] = "new-key"
    api.reads.clear()
    gathered = bed.gather(body)
    assert "Secret shop-db" in api.reads
    assert gathered.observed.config_error is not None
    assert gathered.observed.config_error.reason == "SecretNotFound"


def test_with_a_watched_config_map_the_secret_alone_is_read_and_a_miss_keeps_its_grace(
    api: FakeApi,
) -> None:
    """The usual default-mode pass (the ConfigMap's digest from the watch, Secrets by GET)
    reads the URL alone: a missing Secret is SecretNotFound, not an error of the pass."""
    api.secrets.clear()
    bed = Bed(api, secrets_watched=False)
    watches.config_map_event(bed.reconciler, None, config_map(FILES))
    gathered = bed.gather(migration())
    assert api.reads == ["Secret shop-db"]
    assert gathered.observed.config_error is not None
    assert gathered.observed.config_error.reason == "SecretNotFound"
    assert gathered.observed.config_error.may_appear
    api.secrets[("shop", "shop-db")] = {"url": URL}
    gathered = bed.gather(migration())
    assert gathered.url == URL
    assert gathered.observed.config_error is None


def test_an_api_failure_reading_the_secret_fails_the_pass_not_the_migration(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a missing Secret or key is a condition; the API server failing is the pass's error
    (logged, retried), whichever way the inputs were read."""

    def unavailable(namespace: str, name: str, key: str) -> str:
        raise kube.KubeError(f"Secret {namespace}/{name}: HTTP 503 Service Unavailable")

    monkeypatch.setattr(api, "read_secret_value", unavailable)
    for config_map_watched in (True, False):
        bed = Bed(api, secrets_watched=False)
        if config_map_watched:
            watches.config_map_event(bed.reconciler, None, config_map(FILES))
        with pytest.raises(kube.KubeError, match="503"):
            bed.gather(migration())


def test_an_edited_config_map_re_plans_its_readers_and_an_unchanged_one_does_not(
    api: FakeApi,
) -> None:
    bed = Bed(api)
    watches.config_map_event(bed.reconciler, None, config_map(FILES))
    bed.put(migration())
    bed.run()
    watches.config_map_event(bed.reconciler, "MODIFIED", config_map(FILES))  # labels, say
    watches.config_map_event(bed.reconciler, None, config_map(FILES))  # a relist
    assert bed.triggered == []
    edited = {**FILES, "V2__more.sql": "alter table t add column c int;"}
    watches.config_map_event(bed.reconciler, "MODIFIED", config_map(edited))
    assert bed.triggered == [(KEY, True)]
    watches.config_map_event(bed.reconciler, "DELETED", config_map(edited))
    assert bed.triggered[-1] == (KEY, True)
    assert bed.inputs.config_map_digest("shop", "shop-migrations") is None


def test_only_secrets_a_migration_reads_are_kept_and_dropped_with_it(api: FakeApi) -> None:
    bed = Bed(api)
    watches.secret_event(bed.reconciler, None, secret({"token": "s3cr3t"}, name="unrelated"))
    assert bed.inputs.secret_data("shop", "unrelated") is None
    bed.put(migration())
    bed.run()
    assert bed.inputs.secret_data("shop", "shop-db") is not None
    watches.secret_event(bed.reconciler, "MODIFIED", secret({"url": URL + "?x=1"}))
    assert bed.triggered == [(KEY, True)]
    bed.reconciler.deleted(KEY)
    assert bed.inputs.secret_data("shop", "shop-db") is None
    assert bed.inputs.users((inputs.SECRET, "shop", "shop-db")) == set()


def test_a_get_that_raced_a_watch_event_is_not_kept() -> None:
    cache = inputs.InputCache()
    cache.use(KEY, {(inputs.SECRET, "shop", "shop-db")})
    assert cache.begin_fill(("shop", "shop-db"))
    assert not cache.begin_fill(("shop", "shop-db"))  # one GET at a time
    cache.drop_secret(("shop", "shop-db"))  # deleted while the GET was under way
    cache.end_fill(("shop", "shop-db"), {"url": "b2xk"})
    assert cache.secret_data("shop", "shop-db") is None
    assert cache.begin_fill(("shop", "shop-db"))
    cache.end_fill(("shop", "shop-db"), {"url": "bmV3"})
    assert cache.secret_data("shop", "shop-db") == {"url": "bmV3"}


def test_references_name_every_secret_the_operator_reads() -> None:
    from lockstep.model import parse_spec

    spec = parse_spec(
        {
            "tool": "sql",
            "source": {"configMapRef": {"name": "files"}},
            "database": {
                "engine": "postgresql",
                "urlSecretRef": {"name": "db", "key": "url"},
                "tls": {"secretName": "certs", "ca": "ca.crt"},
            },
            "verify": {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}},
        },
        "shop/shop",
    )
    assert inputs.references("shop", spec) == {
        (inputs.CONFIG_MAP, "shop", "files"),
        (inputs.SECRET, "shop", "db"),
        (inputs.SECRET, "shop", "certs"),
        (inputs.SECRET, "shop", "shadow"),
    }


def test_secrets_are_watched_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `--watch-secrets` (the default; chart: watchSecrets false) no Secret watch is
    registered, and then no
    Secret is kept from a GET (no watch would correct it)."""
    monkeypatch.setattr(handlers.reconciler.gatherer.inputs, "secrets_watched", False)
    registry = kopf.OperatorRegistry()
    assert not list(registry._watching.get_all_handlers())
    handlers.watch_secrets(registry)
    (handler,) = registry._watching.get_all_handlers()
    assert handler.selector is not None and handler.selector.any_name == "secrets"
    assert handlers.reconciler.gatherer.inputs.secrets_watched
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert list(settings.watching.field_selectors.values()) == [handlers.SECRET_FIELD_SELECTOR]
