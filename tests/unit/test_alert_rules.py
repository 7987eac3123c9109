"""The alert rules, read offline: the alerts the issue asks for, their labels and annotations,
the runbook sections they point at, and the promtool tests' input series compared with the
exposition a real operator produced (tests/alerts/exposition/, captured by
tests/e2e/test_alert_series.py). promtool itself runs in tests/integration/test_alerts.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

import alerting
import promql

ALERTS = alerting.alerts()
REQUIRED = {
    "LockstepMigrationFailed",
    "LockstepMigrationStalled",
    "LockstepMigrationRunningTooLong",
    "LockstepRolloutGatedTooLong",
    "LockstepDriftDetected",
    "LockstepMigrationAwaitingApproval",
    "LockstepNoLeader",
}
PER_MIGRATION = REQUIRED - {"LockstepNoLeader"}
RUNBOOK_BASE = "https://github.com/lockstep-dev/lockstep/blob/main/docs/runbook.md#"


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    text = alerting.RUNBOOK.read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {github_anchor(s.splitlines()[0]): s for s in sections}


def test_the_issue_s_alerts_and_no_others() -> None:
    assert set(ALERTS) == REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_alert_labels_and_annotations(name: str) -> None:
    rule = ALERTS[name]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    if name in PER_MIGRATION:
        for key in ("summary", "description"):
            assert "{{ $labels.namespace }}/{{ $labels.name }}" in annotations[key], key
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_runbook_section_for_each_alert(name: str) -> None:
    section = runbook_sections().get(name.lower())
    assert section is not None, f"docs/runbook.md has no section '## {name}'"
    for part in ("**Meaning.**", "**First checks.**", "**Typical causes.**", "**Fixes.**"):
        assert part in section, f"{name}: {part} missing"
    assert "kubectl " in section


def test_runbook_has_no_section_without_an_alert() -> None:
    assert set(runbook_sections()) == {name.lower() for name in REQUIRED}


def test_runbook_links_resolve() -> None:
    anchors = set(runbook_sections())
    links = re.findall(r"\]\(#([^)]+)\)", alerting.RUNBOOK.read_text())
    assert links and set(links) <= anchors


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_templates_use_only_labels_the_expression_keeps(name: str) -> None:
    rule = ALERTS[name]
    reading = promql.read(rule["expr"])
    used = set(re.findall(r"\$labels\.([a-zA-Z_]+)", yaml.safe_dump(rule["annotations"])))
    kept = reading.grouping_labels if "by (" in rule["expr"] else set()
    assert used <= kept, f"{name}: templates use {used - kept}, the expression drops them"
    # Per-migration alerts keep exactly the object's identity (not the scraping replica's).
    if name in PER_MIGRATION:
        assert reading.grouping_labels == {"namespace", "name"}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_rules_use_metrics_and_labels_metrics_py_defines(name: str) -> None:
    defined = alerting.defined_series()
    reading = promql.read(ALERTS[name]["expr"])
    assert reading.selectors, name
    for selector in reading.selectors:
        assert selector.name in defined, f"{name}: {selector.name} is not defined in metrics.py"
        assert selector.label_names <= defined[selector.name], selector
        assert reading.grouping_labels <= defined[selector.name], selector


def rule_tests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, test)
        for path in alerting.rule_test_files()
        for test in yaml.safe_load(path.read_text())["tests"]
    ]


def test_every_alert_is_tested_both_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for _, test in rule_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == REQUIRED
    assert silent == REQUIRED


def test_rule_test_files_load_the_chart_s_rule_file() -> None:
    for path in alerting.rule_test_files():
        document = yaml.safe_load(path.read_text())
        assert [(path.parent / f).resolve() for f in document["rule_files"]] == [
            alerting.RULES_FILE
        ]


def test_rule_tests_input_series_are_shaped_like_the_captured_exposition() -> None:
    """Names, label names and enumerated label values as the real exporter produced them."""
    captured = alerting.committed_exposition()
    defined = alerting.defined_series()
    problems = []
    for series in alerting.input_series():
        where = f"{series.file} / {series.test}: {series.name}"
        if series.name in alerting.PROMETHEUS_SERIES:
            continue
        own = frozenset(series.labels) - alerting.SCRAPE_LABELS
        if series.name not in defined:
            problems.append(f"{where}: not defined in metrics.py")
        elif series.name in captured.sample_names():
            if own not in captured.shapes[series.name]:
                problems.append(f"{where}: labels {sorted(own)} never exported")
            for label in own - {"namespace", "name"}:
                if series.labels[label] not in captured.values[series.name][label]:
                    problems.append(f"{where}: {label}={series.labels[label]!r} never exported")
        elif own != defined[series.name]:
            problems.append(f"{where}: labels {sorted(own)}, metrics.py: {defined[series.name]}")
    assert not problems, "\n".join(problems)


def test_captured_exposition_covers_each_per_migration_metric_the_rules_use() -> None:
    captured = alerting.committed_exposition()
    used = {s.name for rule in ALERTS.values() for s in promql.read(rule["expr"]).selectors}
    for name in used:
        assert name in captured.declared, f"{name} is not in tests/alerts/exposition/"
    for name in used - {"lockstep_leader"}:
        assert captured.values[name]["namespace"] == {"shop"}, name
        assert captured.values[name]["name"], name
    # Gauges set on every reconcile: the failing, the healthy and the drifted migration.
    for name in ("lockstep_migration_failing", "lockstep_migration_stalled"):
        assert captured.values[name]["name"] == {"broken", "slow", "drifted"}, name


def test_rules_test_series_notation_is_read_right() -> None:
    name, labels = alerting.parse_series('a_b{x="1",y="q\\"z"}')
    assert (name, labels) == ("a_b", {"x": "1", "y": 'q\\"z'})
    with pytest.raises(ValueError):
        alerting.parse_series("a{x=1}")
