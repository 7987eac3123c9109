"""A new leader's Jobs and pods are cached before any pass (controller/priming.py): listed in
pages by a Kopf startup handler (Kopf starts its watches only after those), not by Kopf
indexers, whose readiness check is quadratic in the objects listed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from lockstep import constants, kube
from lockstep.controller import handlers, priming, scope, watches
from lockstep.controller.cache import Cache
from lockstep.controller.reconcile import Reconciler

LABELS = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY, constants.LABEL_MIGRATION: "shop"}


def job(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "uid": name, "labels": LABELS},
        "status": {"active": 1},
    }


def pod(namespace: str, name: str, job_name: str) -> dict[str, Any]:
    labels = {**LABELS, "job-name": job_name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": name, "labels": labels},
        "status": {"phase": "Running"},
    }


class PagedApi:
    """Serves `objects[plural][namespace]` in pages; `expire` lists the calls that answer 410."""

    def __init__(self, objects: dict[str, dict[str | None, list[dict[str, Any]]]]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str | None, str, str, int]] = []
        self.expire: set[int] = set()

    def list_page(
        self, plural: str, namespace: str | None, selector: str, token: str, limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        self.calls.append((plural, namespace, selector, token, limit))
        if len(self.calls) in self.expire:
            raise kube.ExpiredError(f"list of {plural}: HTTP 410 Gone")
        items = self.objects[plural].get(namespace, [])
        start = int(token or 0)
        following = start + limit
        return items[start:following], str(following) if following < len(items) else ""


def prime(api: PagedApi, cache: Cache, namespaces: tuple[str, ...] = ()) -> priming.Primed:
    return asyncio.run(
        priming.prime(api, cache.put_job, cache.put_pod, namespaces, "managed=yes", page_size=2)  # type: ignore[arg-type]
    )


def test_every_page_of_jobs_then_pods_is_cached_with_the_selector() -> None:
    jobs = [job("shop", f"j{i}") for i in range(5)]
    pods = [pod("shop", f"p{i}", f"j{i}") for i in range(3)]
    api = PagedApi({"jobs": {None: jobs}, "pods": {None: pods}})
    cache = Cache()
    primed = prime(api, cache)
    assert (primed.jobs, primed.pods, primed.pages) == (5, 3, 5)
    assert [c[0] for c in api.calls] == ["jobs"] * 3 + ["pods"] * 2
    assert {c[2] for c in api.calls} == {"managed=yes"}
    assert [c[3] for c in api.calls[:3]] == ["", "2", "4"]  # each page continues the last
    assert all(cache.job(("shop", f"j{i}")) is not None for i in range(5))
    assert cache.pod_of_job("shop", "j2") is not None
    assert "spec" not in (cache.job(("shop", "j0")) or {})  # slimmed as it arrived


def test_watched_namespaces_are_listed_one_by_one() -> None:
    api = PagedApi(
        {
            "jobs": {"a": [job("a", "j1")], "b": [job("b", "j2")]},
            "pods": {"a": [], "b": [pod("b", "p2", "j2")]},
        }
    )
    cache = Cache()
    assert prime(api, cache, ("a", "b")).jobs == 2
    assert [(c[0], c[1]) for c in api.calls] == [
        ("jobs", "a"),
        ("jobs", "b"),
        ("pods", "a"),
        ("pods", "b"),
    ]
    assert cache.pod_of_job("b", "j2") is not None


def test_an_expired_page_token_lists_that_kind_again_from_the_start() -> None:
    api = PagedApi({"jobs": {None: [job("shop", f"j{i}") for i in range(5)]}, "pods": {None: []}})
    api.expire = {2}  # the second page of Jobs: 410
    cache = Cache()
    primed = prime(api, cache)
    assert primed.jobs == 5
    assert [c[3] for c in api.calls if c[0] == "jobs"] == ["", "2", "", "2", "4"]
    assert all(cache.job(("shop", f"j{i}")) is not None for i in range(5))


def test_a_listing_that_keeps_expiring_fails_the_start() -> None:
    api = PagedApi({"jobs": {None: [job("shop", f"j{i}") for i in range(5)]}, "pods": {None: []}})
    api.expire = {2, 4, 6}
    with pytest.raises(kube.ExpiredError):
        prime(api, Cache())
    assert len(api.calls) == priming.ATTEMPTS * 2


def test_no_kopf_indexers_and_the_cache_is_primed_at_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kopf's indexing readiness (a toggle per listed object, every waiting worker woken at
    each) is what took 10,000 migrations quadratic; the startup handler replaces it."""
    registry = kopf.get_default_registry()
    assert list(registry._indexing.get_all_handlers()) == []
    startup = [
        h.fn for h in registry._activities.get_all_handlers() if "startup" in str(h.activity)
    ]
    assert handlers.prime_cache in startup
    api = PagedApi({"jobs": {"x": [job("x", "j")]}, "pods": {"x": []}})
    monkeypatch.setattr(handlers.reconciler, "api", api)
    monkeypatch.setattr(handlers, "watched_namespaces", ("x",))
    try:
        asyncio.run(handlers.prime_cache())
        assert handlers.cache.job(("x", "j")) is not None
        assert api.calls[0][:3] == ("jobs", "x", "app.kubernetes.io/managed-by=lockstep")
    finally:
        handlers.cache.drop_job(("x", "j"))
    # A shard lists only its own Jobs and their pods.
    api.calls.clear()
    monkeypatch.setattr(handlers.reconciler, "scope", scope.parse("team=payments"))
    try:
        asyncio.run(handlers.prime_cache())
        assert handlers.cache.job(("x", "j")) is not None
        shard = "app.kubernetes.io/managed-by=lockstep,team=payments"
        assert [c[2] for c in api.calls] == [shard, shard]
    finally:
        handlers.cache.drop_job(("x", "j"))


def events_reach_the_cache(kind: str | None, deleted: bool) -> tuple[bool, bool]:
    reconciler = Reconciler(cache=Cache(), emit=lambda body, event: None)
    triggered: list[Any] = []
    reconciler.trigger = lambda key, full=False: triggered.append(key)  # type: ignore[method-assign]
    reconciler.trigger_database = lambda key: None  # type: ignore[method-assign]
    body: Mapping[str, Any] = job("shop", "j")
    watches.job_event(reconciler, kind, body)
    watches.pod_event(reconciler, kind, pod("shop", "p", "j"))
    if deleted:
        watches.job_event(reconciler, "DELETED", body)
        watches.pod_event(reconciler, "DELETED", pod("shop", "p", "j"))
    assert triggered and set(triggered) == {("shop", "shop")}
    return (
        reconciler.cache.job(("shop", "j")) is not None,
        reconciler.cache.pod_of_job("shop", "j") is not None,
    )


@pytest.mark.parametrize("kind", [None, "ADDED", "MODIFIED"])
def test_job_and_pod_events_keep_the_cache(kind: str | None) -> None:
    assert events_reach_the_cache(kind, deleted=False) == (True, True)
    assert events_reach_the_cache(kind, deleted=True) == (False, False)


class Stream:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.closed = False

    def __iter__(self) -> Any:
        return iter(self.lines)

    def close(self) -> None:
        self.closed = True


def probe(monkeypatch: pytest.MonkeyPatch, answer: Stream | Exception) -> bool:
    from lockstep.kube import api, objects

    asked: list[tuple[str, str, dict[str, Any]]] = []

    def request(method: str, path: str, *, query: dict[str, Any], **_: Any) -> Stream:
        asked.append((method, path, query))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(api, "request", request)
    served = objects.serves_streaming_lists(None)
    method, path, query = asked[0]
    assert (method, path) == ("GET", "/api/v1/pods")
    assert query["sendInitialEvents"] is True and query["watch"] is True
    assert query["resourceVersionMatch"] == "NotOlderThan" and query["allowWatchBookmarks"]
    return served


END = json.dumps(
    {
        "type": "BOOKMARK",
        "object": {"metadata": {"annotations": {"k8s.io/initial-events-end": "true"}}},
    }
).encode()


def test_streaming_lists_are_used_where_the_server_ends_the_initial_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = Stream([END, b""])
    assert probe(monkeypatch, stream) is True
    assert stream.closed


def test_a_server_that_refuses_or_ignores_initial_events_gets_plain_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes.client.exceptions import ApiException

    assert probe(monkeypatch, ApiException(status=422, reason="Invalid")) is False
    plain_bookmark = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}'
    assert probe(monkeypatch, Stream([plain_bookmark])) is False  # older than 1.27
    assert probe(monkeypatch, Stream([])) is False
    assert probe(monkeypatch, Stream([b"not json"])) is False


@pytest.mark.parametrize("streaming", [True, False])
def test_kopf_streams_its_lists_when_the_server_does(
    monkeypatch: pytest.MonkeyPatch, streaming: bool
) -> None:
    monkeypatch.setattr(handlers, "streaming_lists", streaming)
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert settings.watching.initial_streaming is streaming


def test_a_server_that_cannot_answer_now_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreachable, 5xx or 429: not an answer (an operator restarted while the API server
    restarts must neither crash nor settle on unpaged lists); the operator asks again."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from lockstep.controller import main

    for failure in (ApiException(status=503, reason="Unavailable"), urllib3.exceptions.HTTPError()):
        with pytest.raises(kube.KubeError):
            probe(monkeypatch, failure)  # type: ignore[arg-type]
    answers: list[Any] = [kube.KubeError("probe: API unreachable (MaxRetryError)"), True]

    def serves(namespace: str | None) -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    monkeypatch.setattr(kube, "serves_streaming_lists", serves)
    monkeypatch.setattr(main, "PROBE_RETRY_SECONDS", 0.01)
    assert asyncio.run(main._streams_lists(())) is True
    assert answers == []


def test_a_listing_that_cannot_reach_the_server_is_retried_by_kopf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unreachable:
        def list_page(self, *_: Any) -> Any:
            raise kube.KubeError("list of jobs: API unreachable (MaxRetryError)")

    monkeypatch.setattr(handlers.reconciler, "api", Unreachable())
    with pytest.raises(kopf.TemporaryError, match="cannot list Lockstep's Jobs yet"):
        asyncio.run(handlers.prime_cache())
