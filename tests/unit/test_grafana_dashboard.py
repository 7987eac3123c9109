"""The Grafana dashboard in the chart, and every PromQL expression Lockstep ships (dashboard and
alert rules): only metric names and labels that operator/lockstep/metrics.py defines."""

from __future__ import annotations

from collections import Counter

import pytest

import alerting
import promql

DASHBOARD = alerting.load_dashboard()
PANELS = [p for p in alerting.dashboard_panels(DASHBOARD) if p.get("type") != "row"]
EXPRESSIONS = {
    **{f"rule {k}": v for k, v in alerting.rule_expressions().items()},
    **{f"dashboard {k}": v for k, v in alerting.dashboard_expressions(DASHBOARD).items()},
}


@pytest.mark.parametrize("where", sorted(EXPRESSIONS))
def test_expression_uses_only_defined_metrics_and_labels(where: str) -> None:
    defined = alerting.defined_series()
    reading = promql.read(alerting.substitute_grafana_variables(EXPRESSIONS[where]))
    assert reading.selectors, f"{where}: no metric selected"
    for selector in reading.selectors:
        assert selector.name in defined, f"{where}: {selector.name} is not in metrics.py"
        unknown = selector.label_names - defined[selector.name] - alerting.SCRAPE_LABELS
        assert not unknown, f"{where}: {selector.name} has no label {unknown}"
        grouping = reading.grouping_labels - alerting.SCRAPE_LABELS
        assert grouping <= defined[selector.name], f"{where}: groups by {grouping}"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    used = set()
    for expr in EXPRESSIONS.values():
        used |= promql.read(alerting.substitute_grafana_variables(expr)).metric_names
    dashboard_used = set()
    for expr in alerting.dashboard_expressions(DASHBOARD).values():
        dashboard_used |= promql.read(alerting.substitute_grafana_variables(expr)).metric_names
    assert {
        "lockstep_migration_ready",
        "lockstep_migration_failing",
        "lockstep_migration_stalled",
        "lockstep_migration_runs_total",
        "lockstep_migration_duration_seconds_bucket",
        "lockstep_lock_wait_seconds_bucket",
        "lockstep_gated_pods",
        "lockstep_leader",
    } <= dashboard_used
    titles = {p["title"] for p in PANELS}
    assert {"Not ready", "Failing (retrying)", "Stalled", "Leader", "Gated pods"} <= titles
    tables = {p["title"] for p in PANELS if p["type"] == "table"}
    assert {"All migrations", "Not ready", "Failing (retrying)", "Stalled"} <= tables


def test_dashboard_quantiles_read_histograms_by_le() -> None:
    quantiles = [e for e in EXPRESSIONS.values() if "histogram_quantile" in e]
    assert len(quantiles) >= 4
    for expr in quantiles:
        reading = promql.read(alerting.substitute_grafana_variables(expr))
        assert "le" in reading.grouping_labels, expr
        assert all(s.name.endswith("_bucket") for s in reading.selectors), expr


def test_dashboard_is_importable() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"] == "Lockstep"
    assert isinstance(DASHBOARD["schemaVersion"], int)
    ids = Counter(p["id"] for p in alerting.dashboard_panels(DASHBOARD))
    assert all(count == 1 for count in ids.values()), ids
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in alerting.dashboard_panels(DASHBOARD):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_namespace_variable_filters_every_per_migration_query() -> None:
    for where, expr in alerting.dashboard_expressions(DASHBOARD).items():
        reading = promql.read(alerting.substitute_grafana_variables(expr))
        per_object = [s for s in reading.selectors if s.name.startswith("lockstep_migration_")]
        per_object += [s for s in reading.selectors if s.name.startswith("lockstep_lock_wait")]
        if where.startswith("variable "):
            continue
        for selector in per_object:
            matchers = {(m.label, m.op, m.value) for m in selector.matchers}
            assert ("namespace", "=~", "value") in matchers, f"{where}: {selector.name}"
