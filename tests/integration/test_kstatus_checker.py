"""The kstatus checker (tools/kstatus: sigs.k8s.io/cli-utils' status.Compute, what Flux waits on)
on the status snapshots captured from real e2e runs, side by side with the Argo CD health check:
both GitOps tools must read a DatabaseMigration the same way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

import alerting
import argocd_health

pytestmark = pytest.mark.integration

# Argo CD health -> the kstatus verdict that means the same to Flux.
SAME_MEANING = {
    "Healthy": "Current",
    "Progressing": "InProgress",
    "Suspended": "InProgress",
    "Degraded": "Failed",
}
CASES = {Path(t["inputPath"]).stem: t for t in argocd_health.load_tests()}


@pytest.fixture(scope="module")
def kstatus() -> Path:
    return alerting.kstatus()


@pytest.mark.parametrize("case", sorted(CASES))
def test_kstatus_agrees_with_argocd_health(kstatus: Path, case: str) -> None:
    test = CASES[case]
    obj = yaml.safe_load((argocd_health.HEALTH_DIR / test["inputPath"]).read_text())
    (verdict,) = alerting.kstatus_verdicts(kstatus, [obj])
    assert verdict["status"] == SAME_MEANING[test["healthStatus"]["status"]], verdict
    if verdict["status"] == "Failed":
        assert verdict["message"] == test["healthStatus"]["message"]


def run(kstatus: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kstatus), *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


DBM = {
    "apiVersion": "lockstep.dev/v1alpha1",
    "kind": "DatabaseMigration",
    "metadata": {"name": "a", "namespace": "n", "generation": 2},
    "status": {"observedGeneration": 1},
}


def test_reads_yaml_documents_json_streams_and_lists(kstatus: Path) -> None:
    lag = "generation is 2, but latest observed generation is 1"
    documents = yaml.safe_dump(DBM) + "---\n" + yaml.safe_dump({**DBM, "kind": "Other"})
    out = run(kstatus, stdin=documents)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(v["kind"], v["status"]) for v in lines] == [
        ("DatabaseMigration", "InProgress"),
        ("Other", "InProgress"),
    ]
    assert lag in lines[0]["message"]
    assert lines[0]["generation"] == 2 and lines[0]["observedGeneration"] == 1

    stream = json.dumps(DBM) + json.dumps({**DBM, "status": {"observedGeneration": 2}})
    verdicts = [
        json.loads(line)["status"] for line in run(kstatus, stdin=stream).stdout.splitlines()
    ]
    assert verdicts == ["InProgress", "Current"]

    listed = {"apiVersion": "v1", "kind": "List", "items": [DBM, DBM]}
    out = run(kstatus, stdin=json.dumps(listed))
    assert [json.loads(line)["name"] for line in out.stdout.splitlines()] == ["a", "a"]


def test_errors_and_usage(kstatus: Path) -> None:
    assert run(kstatus, stdin="kind: [").returncode == 1
    assert run(kstatus, stdin="metadata: {name: x}\n").returncode == 1  # no kind
    assert run(kstatus, "name-without-kubeconfig").returncode == 2
    assert run(kstatus, "--kubeconfig", "k").returncode == 2
    assert run(kstatus, "--no-such-flag").returncode == 2
