"""The alert rules and the dashboard select series that the real exporter really produces.

A failing, a succeeding and a hand-edited (drifted) DatabaseMigration run through a real
operator; its /metrics is scraped at each stage (a Job running, a failed attempt retrying,
stalled, migrated, drifted). Every metric name,
label name and label value the rules, the dashboard and the promtool rule tests rely on must
appear in those scrapes, so the rules cannot drift away from the exporter unnoticed.

The scrapes are committed under tests/alerts/exposition/ (namespace replaced by `shop`): the
promtool tests in tests/integration/test_alerts.py evaluate the rules on them, and the unit tests
check the hand-written rule tests' input series against them. `LOCKSTEP_UPDATE_SNAPSHOTS=1`
rewrites them from this run; otherwise this test checks that every series shape in them is still
one the exporter produces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

import alerting
import promql
from dbtest import rolled_back_by_hand
from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

SNAPSHOT_NAMESPACE = "shop"
# Declared by metrics.py but possibly without samples in this run: gated pods need gated
# workloads; pending needs status.pendingCount, which no adapter reports yet. Only these may lack
# samples while a rule or a panel uses them.
WITHOUT_SAMPLES_HERE = frozenset({"lockstep_gated_pods", "lockstep_migration_pending"})

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Stage = Callable[[Samples], bool]


def samples_of(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, namespace: str, name: str) -> float | None:
    return samples.get((metric, frozenset({("namespace", namespace), ("name", name)})))


def capture_stages(
    operator: OperatorProcess,
    stages: Mapping[str, Stage],
    describe: Callable[[], str],
    on_scrape: Callable[[Samples], None] = lambda samples: None,
    timeout: float = 180.0,
) -> dict[str, str]:
    """Scrape until each stage's predicate has held once; the first matching scrape per stage."""
    captured: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline and len(captured) < len(stages):
        last = operator.metrics()
        samples = samples_of(last)
        on_scrape(samples)
        for stage, predicate in stages.items():
            if stage not in captured and predicate(samples):
                captured[stage] = last
        time.sleep(0.1)
    missing = sorted(set(stages) - set(captured))
    lockstep = "\n".join(line for line in last.splitlines() if line.startswith("lockstep_migr"))
    assert not missing, f"stages never seen: {missing}\n{describe()}\nlast scrape:\n{lockstep}"
    return captured


def test_rules_and_dashboard_select_series_the_exporter_produces(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    other_pg_url: str,
    drift_pg_url: str,
) -> None:
    kubetest.create_secret(k8s, namespace, "broken-db", {"url": pg_url})
    kubetest.create_secret(k8s, namespace, "slow-db", {"url": other_pg_url})
    kubetest.create_secret(k8s, namespace, "drifted-db", {"url": drift_pg_url})
    kubetest.create_config_map(
        k8s,
        namespace,
        "drifted",
        {"V1__a.sql": "CREATE TABLE a (id int);", "V2__b.sql": "CREATE TABLE b (id int);"},
    )
    kubetest.create_config_map(
        k8s,
        namespace,
        "broken",
        {
            "V1__items.sql": "CREATE TABLE items (id int PRIMARY KEY);",
            "V2__legacy.sql": "INSERT INTO items SELECT id FROM legacy_items;",
        },
    )
    kubetest.create_config_map(
        k8s,
        namespace,
        "slow",
        {"V1__slow.sql": "SELECT pg_sleep(5); CREATE TABLE orders (id int PRIMARY KEY);"},
    )
    for name, extra in (
        ("broken", {"retry": {"limit": 1, "backoffSeconds": 3, "maxBackoffSeconds": 3}}),
        ("slow", {}),
        ("drifted", {"driftCheck": {"intervalSeconds": 30}}),
    ):
        database = {"engine": "postgresql", "urlSecretRef": {"name": f"{name}-db", "key": "url"}}
        spec = {"tool": "sql", "source": {"configMapRef": {"name": name}}, "database": database}
        kubetest.create_migration(
            k8s, namespace, {"metadata": {"name": name}, "spec": {**spec, **extra}}
        )

    def gauge(metric: str, name: str) -> Callable[[Samples], float | None]:
        return lambda s: value(s, metric, namespace, name)

    failing, stalled = (
        gauge("lockstep_migration_failing", "broken"),
        gauge("lockstep_migration_stalled", "broken"),
    )
    running = gauge("lockstep_migration_running_since_timestamp_seconds", "slow")
    ready = gauge("lockstep_migration_ready", "slow")
    drift_ready = gauge("lockstep_migration_ready", "drifted")
    drift = gauge("lockstep_migration_drift", "drifted")
    edited: list[bool] = []

    def edit_once_migrated(samples: Samples) -> None:
        if not edited and drift_ready(samples) == 1.0:
            rolled_back_by_hand(drift_pg_url, kubetest.history_table(namespace, "drifted"))
            edited.append(True)

    captures = capture_stages(
        operator,
        {
            "running": lambda s: running(s) is not None,
            "retrying": lambda s: failing(s) == 1.0 and stalled(s) == 0.0,
            "stalled": lambda s: stalled(s) == 1.0 and failing(s) == 1.0,
            "migrated": lambda s: ready(s) == 1.0 and stalled(s) == 1.0,
            # The next drift check (every 30 s) reads revision 1 where Lockstep applied 2.
            "drifted": lambda s: drift(s) == 1.0,
        },
        describe=lambda: describe_migrations(k8s, namespace, ("broken", "slow", "drifted")),
        on_scrape=edit_once_migrated,
    )
    # This test's series (renamed to the snapshot's namespace) and those of no namespace: other
    # tests' DatabaseMigrations may share the session's operator.
    snapshot = {
        stage: alerting.normalize_exposition(text, namespace, SNAPSHOT_NAMESPACE)
        for stage, text in captures.items()
    }
    live = alerting.Exposition.parse(*snapshot.values())

    # The exporter's per-object series carry exactly namespace and name, for both objects.
    for metric in ("lockstep_migration_ready", "lockstep_migration_failing"):
        assert live.shapes[metric] == {frozenset({"namespace", "name"})}, metric
        assert {SNAPSHOT_NAMESPACE} == live.values[metric]["namespace"]
        assert {"broken", "slow", "drifted"} <= live.values[metric]["name"]
    assert {"Succeeded", "Failed"} <= live.values["lockstep_migration_runs_total"]["result"]

    problems: list[str] = []
    expressions = {
        **{f"rule {k}": v for k, v in alerting.rule_expressions().items()},
        **{f"dashboard {k}": v for k, v in alerting.dashboard_expressions().items()},
    }
    for where, expr in expressions.items():
        problems += selector_problems(where, expr, live)
    for series in alerting.input_series():
        problems += input_series_problems(series, live)
    assert not problems, "\n".join(problems)

    if alerting.UPDATE_SNAPSHOTS:
        alerting.EXPOSITION_DIR.mkdir(parents=True, exist_ok=True)
        for stage, text in snapshot.items():
            (alerting.EXPOSITION_DIR / f"{stage}.prom").write_text(text)
    committed = alerting.committed_exposition()
    stale = committed.shape_set() - live.shape_set()
    assert not stale, (
        f"tests/alerts/exposition/ has series the exporter no longer produces: {sorted(stale)};"
        " rerun this test with LOCKSTEP_UPDATE_SNAPSHOTS=1"
    )


def describe_migrations(api: client.ApiClient, namespace: str, names: tuple[str, ...]) -> str:
    lines = []
    for name in names:
        status = kubetest.get_migration(api, namespace, name).get("status", {})
        conditions = [
            f"{c['type']}={c['status']} {c.get('reason')}: {c.get('message')}"
            for c in status.get("conditions", [])
        ]
        lines.append(f"{name}: failures={status.get('failures')} {conditions}")
    return "\n".join(lines)


def selector_problems(where: str, expr: str, live: alerting.Exposition) -> list[str]:
    problems: list[str] = []
    reading = promql.read(alerting.substitute_grafana_variables(expr))
    for selector in reading.selectors:
        name = selector.name
        if name not in live.sample_names():
            if name in live.declared and name in WITHOUT_SAMPLES_HERE:
                continue
            problems.append(f"{where}: {name} is not in the exporter's output")
            continue
        real_labels = set().union(*live.shapes[name])
        for matcher in selector.matchers:
            if matcher.label == "__name__":
                continue
            if matcher.label not in real_labels | alerting.SCRAPE_LABELS:
                problems.append(f"{where}: {name} has no label {matcher.label}")
            elif matcher.op == "=" and matcher.value not in live.values[name][matcher.label]:
                seen = sorted(live.values[name][matcher.label])
                problems.append(
                    f"{where}: {name}{{{matcher.label}={matcher.value!r}}}: seen {seen}"
                )
        for label in reading.grouping_labels - alerting.SCRAPE_LABELS:
            # Every label an expression groups or joins by must be on every series it selects.
            if label not in real_labels:
                problems.append(f"{where}: groups by {label}, which {name} does not have")
    return problems


def input_series_problems(series: alerting.InputSeries, live: alerting.Exposition) -> list[str]:
    where = f"{series.file} / {series.test}: {series.name}"
    if series.name in alerting.PROMETHEUS_SERIES:
        return []
    if series.name not in live.declared:
        return [f"{where}: not a series the exporter declares"]
    own = frozenset(series.labels) - alerting.SCRAPE_LABELS
    if series.name in live.sample_names() and own not in live.shapes[series.name]:
        return [f"{where}: labels {sorted(own)}; the exporter's: {live.shapes[series.name]}"]
    problems = []
    for label, wanted in series.labels.items():
        if label in alerting.SCRAPE_LABELS | {"namespace", "name"}:
            continue  # identities: any value is realistic
        if series.name in live.sample_names() and wanted not in live.values[series.name][label]:
            problems.append(f"{where}: {label}={wanted!r} never seen")
    return problems
