"""The Argo CD health check (health.lua), run in a real Lua 5.1 runtime as Argo CD runs it:
every case of health_test.yaml (objects captured from e2e runs), edge cases built here, and the
copy of the script in docs/argocd.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import argocd_health

REPO = Path(__file__).resolve().parents[2]
TESTS = argocd_health.load_tests()


@pytest.mark.parametrize("case", TESTS, ids=[Path(t["inputPath"]).stem for t in TESTS])
def test_health_test_yaml_case(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((argocd_health.HEALTH_DIR / case["inputPath"]).read_text())
    assert argocd_health.evaluate(obj) == case["healthStatus"]


def test_health_test_yaml_covers_every_fixture_and_every_health() -> None:
    listed = {t["inputPath"] for t in TESTS}
    on_disk = {f"testdata/{p.name}" for p in argocd_health.TESTDATA.glob("*.yaml")}
    assert listed == on_disk
    assert {t["healthStatus"]["status"] for t in TESTS} == {
        "Healthy",
        "Progressing",
        "Suspended",
        "Degraded",
    }
    assert all(t["healthStatus"]["status"] in argocd_health.STATUSES for t in TESTS)


def test_captured_fixtures_say_where_they_come_from() -> None:
    for path in argocd_health.TESTDATA.glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith(("# Captured from a real e2e run", "# Written by hand")), path


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message or reason}


def dbm(generation: int = 3, observed: int | None = 3, *conditions: dict[str, Any]) -> Any:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "shop", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "health"),
    [
        pytest.param(
            {"metadata": {"generation": 1}},
            ("Progressing", "Waiting for Lockstep to reconcile the migration"),
            id="no-status",
        ),
        pytest.param(
            dbm(3, None, condition("Ready", "True", "Succeeded", "at 7")),
            ("Progressing", "Waiting for Lockstep to observe generation 3"),
            id="status-without-observed-generation",
        ),
        pytest.param(
            # A new spec is not judged by the old verdict, not even a stall.
            dbm(4, 3, condition("Ready", "False", "X"), condition("Stalled", "True", "X")),
            ("Progressing", "Waiting for Lockstep to observe generation 4"),
            id="stalled-but-spec-changed-since",
        ),
        pytest.param(
            dbm(3, 3, condition("Ready", "False", "WaitingForLock", "lock")),
            ("Progressing", "lock"),
            id="ready-false-without-reconciling",
        ),
        pytest.param(
            dbm(3, 3, condition("Ready", "Unknown", "Probing", "checking")),
            ("Progressing", "checking"),
            id="ready-unknown",
        ),
        pytest.param(dbm(3, 3), ("Progressing", "Waiting for the Ready condition"), id="no-ready"),
        pytest.param(
            dbm(
                3,
                3,
                condition("Ready", "False", "RetryScheduled", "r"),
                condition("Reconciling", "True", "RetryScheduled", "retrying at noon"),
            ),
            ("Progressing", "retrying at noon"),
            id="reconciling",
        ),
        pytest.param(
            dbm(
                3,
                3,
                condition("Ready", "False", "ChecksumMismatch", "ready says this"),
                condition("Stalled", "True", "ChecksumMismatch", "V1 changed after it was applied"),
            ),
            ("Degraded", "V1 changed after it was applied"),
            id="stalled-message",
        ),
        pytest.param(
            dbm(
                3,
                3,
                condition("Ready", "True", "Succeeded", "at 7"),
                condition("Drifted", "False", "InSync"),
            ),
            ("Healthy", "at 7"),
            id="drifted-false-is-plain-healthy",
        ),
        pytest.param(
            dbm(3, 3, condition("Ready", "False", "AwaitingApproval", "approve abc")),
            ("Suspended", "approve abc"),
            id="awaiting-approval",
        ),
    ],
)
def test_edge_cases(obj: dict[str, Any], health: tuple[str, str]) -> None:
    assert argocd_health.evaluate(obj) == {"status": health[0], "message": health[1]}


def test_the_runtime_is_lua_5_1_without_the_libraries_argo_cd_withholds() -> None:
    probe = "return {status = _VERSION, message = tostring(io) .. tostring(os)}"
    assert argocd_health.evaluate({}, probe) == {"status": "Lua 5.1", "message": "nilnil"}


def test_docs_argocd_md_holds_the_same_script() -> None:
    text = (REPO / "docs" / "argocd.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    key = "resource.customizations.health.lockstep.dev_DatabaseMigration"
    config_map = next(yaml.safe_load(b) for b in blocks if "kind: ConfigMap" in b)
    assert config_map["metadata"]["name"] == "argocd-cm"
    script = argocd_health.HEALTH_LUA.read_text()
    assert config_map["data"][key] == script
    helm = next(yaml.safe_load(b) for b in blocks if b.startswith("configs:"))
    assert helm["configs"]["cm"][key] == script
