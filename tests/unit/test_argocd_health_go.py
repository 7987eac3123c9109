"""health.lua through Argo CD's own code path (`util/lua`: gopher-lua and Argo CD's sandbox, the
VM its application controller uses), compared with health_test.yaml and with the lupa evaluation
the other tests use (tests/support/argocd_health.py).

The binary (tools/argocd-health) cannot be built from the Go module proxy (ADR 0013); it is built
inside an Argo CD source tree by tools/argocd-health/build.sh and cached. Without it these tests
skip and say how to build it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import argocd_health

CACHE = Path(os.environ.get("LOCKSTEP_CACHE", Path.home() / ".cache" / "lockstep"))
BINARY = CACHE / "argocd" / "bin" / "argocd-health"
SOURCE = BINARY.parent / ".source-argocd-health"
TESTS = argocd_health.load_tests()

pytestmark = pytest.mark.skipif(
    not BINARY.exists(),
    reason=f"{BINARY} is not built: it needs an Argo CD source tree "
    "(tools/argocd-health/build.sh <argo-cd checkout>; the module proxy cannot serve Argo CD's "
    "Lua package to Go 1.26, docs/adr/0013-argocd-is-not-built-here.md)",
)


@pytest.fixture(scope="module")
def argocd_verdicts() -> dict[str, dict[str, str]]:
    """Argo CD's verdict for every input of health_test.yaml, by input path."""
    out = subprocess.run(
        [str(BINARY), str(argocd_health.HEALTH_LUA), str(argocd_health.HEALTH_TESTS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    verdicts = [json.loads(line) for line in out.splitlines()]
    return {v["inputPath"]: {"status": v["status"], "message": v["message"]} for v in verdicts}


def test_argocd_evaluates_every_case(argocd_verdicts: dict[str, dict[str, str]]) -> None:
    assert set(argocd_verdicts) == {t["inputPath"] for t in TESTS}


@pytest.mark.parametrize("case", TESTS, ids=[Path(t["inputPath"]).stem for t in TESTS])
def test_argocd_agrees_with_health_test_yaml_and_with_lupa(
    case: dict[str, Any], argocd_verdicts: dict[str, dict[str, str]]
) -> None:
    argocd = argocd_verdicts[case["inputPath"]]
    assert argocd == case["healthStatus"], f"Argo CD {SOURCE.read_text().strip()}"
    obj = yaml.safe_load((argocd_health.HEALTH_DIR / case["inputPath"]).read_text())
    assert argocd_health.evaluate(obj) == argocd
