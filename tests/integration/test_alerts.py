"""The alert rules and the dashboard's queries through the real promtool (Prometheus 3, built
from Go modules by tools/k8s/build.sh): syntax, the hand-written rule tests, the rules evaluated
on the series a real operator exported (tests/alerts/exposition/), and proof that the rule tests
fail when a rule breaks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import alerting

pytestmark = pytest.mark.integration

EVAL_MINUTES = 10


@pytest.fixture(scope="module")
def promtool() -> Path:
    return alerting.promtool()


def run(
    promtool: Path, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )


def test_promtool_is_prometheus_3(promtool: Path) -> None:
    result = run(promtool, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("promtool, version 3."), result.stdout


def test_check_rules(promtool: Path) -> None:
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", alerting.RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting.load_rules())} rules found" in result.stdout


def test_rule_unit_tests(promtool: Path) -> None:
    files = alerting.rule_test_files()
    assert len(files) >= 2
    result = run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("LockstepNoLeader", " or absent(lockstep_leader)", ""),
        ("LockstepMigrationStalled", "for: 2m", "for: 0m"),
        ("LockstepMigrationFailed", "unless on (namespace, name)", "or on (namespace, name)"),
        ("LockstepMigrationRunningTooLong", "> 1800", "> 3600"),
        ("LockstepRolloutGatedTooLong", "(lockstep_gated_pods) > 0", "(lockstep_gated_pods) > 5"),
        (
            "LockstepDriftDetected",
            "(lockstep_migration_drift) == 1",
            "(lockstep_migration_drift) == 2",
        ),
        ("LockstepMigrationAwaitingApproval", "for: 30m", "for: 60m"),
    ],
)
def test_rule_tests_fail_when_a_rule_breaks(
    promtool: Path, tmp_path: Path, alert: str, old: str, new: str
) -> None:
    document = yaml.safe_load(alerting.RULES_FILE.read_text())
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert]
    text = yaml.safe_dump(rule)
    assert old in text, f"mutation target {old!r} not in {alert}"
    rule.clear()
    rule.update(yaml.safe_load(text.replace(old, new)))
    broken = tmp_path / "charts" / "lockstep" / "files" / alerting.RULES_FILE.name
    broken.parent.mkdir(parents=True)
    broken.write_text(yaml.safe_dump(document))
    tests = tmp_path / "tests" / "alerts"
    tests.mkdir(parents=True)
    for path in alerting.rule_test_files():
        (tests / path.name).write_text(path.read_text())
    result = run(promtool, "test", "rules", *sorted(tests.glob("*_test.yaml")))
    assert result.returncode != 0, f"the rule tests did not notice: {alert}: {old!r} -> {new!r}"
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(promtool: Path, tmp_path: Path) -> None:
    expressions = alerting.dashboard_expressions()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": alerting.substitute_grafana_variables(expr)}
        for i, expr in enumerate(expressions.values())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    # The same check rejects a broken query, so passing means something.
    rules.append({"record": "dashboard:broken", "expr": "sum by (le (x)"})
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert run(promtool, "check", "rules", path).returncode != 0


# --- the rules on the exporter's real series -------------------------------------------------


def series_text(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}}"


def number(value: float) -> str:
    text = repr(float(value))
    assert "e" not in text and "inf" not in text, f"{value} cannot be a promtool series value"
    return text


def rendered(rule: dict[str, Any], namespace: str, name: str) -> dict[str, str]:
    """The annotations of an alert whose templates use only $labels.namespace and .name."""
    out = {}
    for key, template in rule["annotations"].items():
        text = template.replace("{{ $labels.namespace }}", namespace)
        text = text.replace("{{ $labels.name }}", name)
        assert "{{" not in text, f"{rule['alert']}.{key} needs more than labels to render"
        out[key] = text
    return out


def expected_alerts(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> set[tuple[str, str, str]]:
    """What the alerts mean, from the gauges alone: (alert, namespace, name)."""

    def gauge(metric: str) -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["namespace"], dict(labels)["name"]): value
            for (name, labels), value in samples.items()
            if name == metric
        }

    failing, stalled = gauge("lockstep_migration_failing"), gauge("lockstep_migration_stalled")
    drift = gauge("lockstep_migration_drift")
    found = set()
    for key, value in failing.items():
        if value == 1 and stalled.get(key) != 1:
            found.add(("LockstepMigrationFailed", *key))
    found |= {("LockstepMigrationStalled", *k) for k, v in stalled.items() if v == 1}
    found |= {("LockstepDriftDetected", *k) for k, v in drift.items() if v == 1}
    return found


def test_rules_on_the_series_a_real_operator_exported(promtool: Path, tmp_path: Path) -> None:
    """Each captured scrape, held for 10 minutes: exactly the alerts its state means fire."""
    captures = sorted(alerting.EXPOSITION_DIR.glob("*.prom"))
    assert {p.stem for p in captures} >= {"running", "retrying", "stalled", "migrated", "drifted"}
    rules = alerting.alerts()
    tests = []
    every_expected: set[str] = set()
    for capture in captures:
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(capture.read_text())
            for s in family.samples
        }
        expected = expected_alerts(samples)
        every_expected |= {alert for alert, _, _ in expected}
        cases = []
        for alert, rule in sorted(rules.items()):
            exp = [
                {
                    "exp_labels": {
                        "severity": rule["labels"]["severity"],
                        "namespace": ns,
                        "name": n,
                    },
                    "exp_annotations": rendered(rule, ns, n),
                }
                for a, ns, n in sorted(expected)
                if a == alert
            ]
            cases.append({"eval_time": f"{EVAL_MINUTES}m", "alertname": alert, "exp_alerts": exp})
        tests.append(
            {
                "name": f"captured {capture.name}",
                "interval": "1m",
                "input_series": [
                    {
                        "series": series_text(name, dict(labels)),
                        "values": f"{number(v)}x{EVAL_MINUTES + 5}",
                    }
                    for (name, labels), v in sorted(samples.items())
                ],
                "alert_rule_test": cases,
            }
        )
    assert every_expected == {
        "LockstepMigrationFailed",
        "LockstepMigrationStalled",
        "LockstepDriftDetected",
    }
    path = tmp_path / "captured_test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(alerting.RULES_FILE)], "evaluation_interval": "1m", "tests": tests},
            width=1000,
        )
    )
    result = run(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
