"""--selector: which DatabaseMigrations an operator instance owns (kubectl's -l syntax)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lockstep import gate
from lockstep.controller import scope, watches
from lockstep.controller.cache import Cache
from lockstep.controller.reconcile import Reconciler


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("team=payments", {"team": "payments"}, True),
        ("team==payments", {"team": "payments"}, True),
        ("team=payments", {"team": "search"}, False),
        ("team=payments", {}, False),
        ("team!=payments", {}, True),
        ("team!=payments", {"team": "payments"}, False),
        ("shard in (a, b)", {"shard": "b"}, True),
        ("shard in (a,b)", {"shard": "c"}, False),
        ("shard notin (a,b)", {"shard": "c"}, True),
        ("shard notin (a,b)", {}, True),
        ("owned", {"owned": ""}, True),
        ("owned", {}, False),
        ("!legacy", {}, True),
        ("!legacy", {"legacy": "yes"}, False),
        (
            "example.com/team=a,shard in (x,y),!legacy",
            {"example.com/team": "a", "shard": "y"},
            True,
        ),
        (
            "example.com/team=a,shard in (x,y),!legacy",
            {"example.com/team": "a", "shard": "z"},
            False,
        ),
    ],
)
def test_selectors_match_as_kubectl_does(text: str, labels: dict[str, str], expected: bool) -> None:
    assert scope.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["team=", "=a", "shard in (a,,b)", "shard in a,b", "a b", "x=(y)"])
def test_a_selector_that_does_not_parse_says_which_part(text: str) -> None:
    if text == "team=":  # an empty value is valid in kubectl (matches the empty label)
        assert scope.parse(text).matches({"team": ""})
        return
    with pytest.raises(scope.InvalidSelectorError) as caught:
        scope.parse(text)
    assert "selector" in str(caught.value)


def migration(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ns", "name": name, "labels": labels, "uid": name},
        "spec": {},
    }


def reconciler_for(selector: str) -> Reconciler:
    return Reconciler(cache=Cache(), emit=lambda *_: None, scope=scope.parse(selector))


def in_a_loop(events: Callable[[], None]) -> None:
    """Watch handlers trigger passes on the running loop: give them one, cancel the passes."""

    async def run() -> None:
        events()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    asyncio.run(run())


def test_an_instance_caches_only_the_migrations_its_selector_matches() -> None:
    reconciler = reconciler_for("team=payments")

    def events() -> None:
        watches.migration_event(reconciler, "ADDED", migration("pay", {"team": "payments"}))
        watches.migration_event(reconciler, "ADDED", migration("search", {"team": "search"}))

    in_a_loop(events)
    assert reconciler.cache.migration(("ns", "pay")) is not None
    assert reconciler.cache.migration(("ns", "search")) is None
    assert reconciler.out_of_scope == {("ns", "search")}


def test_a_migration_that_leaves_the_selector_is_forgotten_and_its_pods_left_alone() -> None:
    warned: list[object] = []
    reconciler = Reconciler(
        cache=Cache(), emit=lambda *event: warned.append(event), scope=scope.parse("team=payments")
    )
    gated_pod = {
        "metadata": {
            "namespace": "ns",
            "name": "web-1",
            "uid": "p1",
            "labels": {"lockstep.dev/wait-for": "pay"},
        },
        "spec": {"schedulingGates": [{"name": gate.GATE}]},
    }

    def events() -> None:
        watches.migration_event(reconciler, "ADDED", migration("pay", {"team": "payments"}))
        watches.migration_event(reconciler, "MODIFIED", migration("pay", {"team": "search"}))
        watches.app_pod_event(reconciler, "ADDED", gated_pod)

    in_a_loop(events)
    assert reconciler.cache.migration(("ns", "pay")) is None
    assert warned == []  # not "MigrationNotFound": it exists, another instance owns it
