"""The rollout gate's decisions, its admission answers, and `lockstep wait`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lockstep import gate, kube
from lockstep.pod import wait


def pod(image: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": annotations},
        "spec": {
            "containers": [{"name": "web", "image": image}, {"name": "proxy", "image": "envoy"}]
        },
    }


def migration(
    applied: str | None, ready: bool = True, spec_image: str | None = "app:2"
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "history": [{"result": "Succeeded", "image": "app:1"}],
    }
    if applied:
        status["appliedImage"] = applied
    spec = {"image": spec_image} if spec_image else {}
    return {"metadata": {"generation": 1}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("image", "applied", "gated"),
    [
        ("app:2", "app:2", False),  # migrated for this image
        ("app:2", "app:1", True),  # new image, migration pending
        ("app:1", "app:2", False),  # an older image that ran migrations before stays allowed
        ("app:3", "app:2", True),  # the app was bumped before the migration (reverse order)
    ],
)
def test_pods_wait_unless_their_image_is_migrated(image: str, applied: str, gated: bool) -> None:
    assert gate.decide(pod(image), migration(applied), "shop").gate is gated


def test_a_missing_migration_gates_and_says_so() -> None:
    verdict = gate.decide(pod("app:2"), None, "shop")
    assert verdict.gate and verdict.reason == "MigrationNotFound" and "shop" in verdict.message


def test_the_annotation_picks_the_container() -> None:
    chosen = pod("app:2", **{"lockstep.dev/container": "proxy"})
    assert gate.pod_image(chosen) == "envoy"
    assert gate.pod_image(pod("app:2")) == "app:2"


def test_built_in_sources_gate_until_ready_for_the_current_generation() -> None:
    assert gate.decide(pod("x"), migration(None, ready=False, spec_image=None), "m").gate
    assert not gate.decide(pod("x"), migration(None, ready=True, spec_image=None), "m").gate
    behind = migration(None, ready=True, spec_image=None)
    behind["metadata"]["generation"] = 2
    assert gate.decide(pod("x"), behind, "m").gate


def test_admission_patch_adds_our_gate_and_keeps_others() -> None:
    assert gate.gate_patch(pod("a")) == [
        {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": gate.GATE}]}
    ]
    other = pod("a")
    other["spec"]["schedulingGates"] = [{"name": "example.com/quota"}]
    assert gate.gate_patch(other)[0]["path"] == "/spec/schedulingGates/-"
    other["spec"]["schedulingGates"].append({"name": gate.GATE})
    assert gate.gate_patch(other) == []
    assert gate.gates_without_ours(other) == [{"name": "example.com/quota"}]
    review = gate.admission_response("uid-1", gate.gate_patch(pod("a")), "waiting")
    assert review["response"]["allowed"] is True
    assert json.loads(base64.b64decode(review["response"]["patch"]))[0]["op"] == "add"


def test_lockstep_wait_returns_once_migrated(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[dict[str, Any] | None] = [None, migration("app:1"), migration("app:2")]

    def get_migration(namespace: str, name: str) -> dict[str, Any]:
        answer = answers.pop(0)
        if answer is None:
            raise kube.NotFoundError(name)
        return answer

    monkeypatch.setattr(kube, "load_config", lambda _=None: None)
    monkeypatch.setattr(kube, "get_migration", get_migration)
    assert wait.wait_for_migration("shop", "app:2", "ns", 0, 0, None) == 0
    assert answers == []


def test_lockstep_wait_gives_up_after_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "load_config", lambda _=None: None)
    monkeypatch.setattr(kube, "get_migration", lambda namespace, name: migration("app:1"))
    assert wait.wait_for_migration("shop", "app:2", "ns", 0.05, 0.01, None) == 1
