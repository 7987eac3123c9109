"""What the alert rules, the Grafana dashboard and the exporter say about series, side by side.

- `defined_series()`: every sample name metrics.py can export, with its label names.
- `Exposition`: the samples of a real /metrics scrape (names, label names, label values).
- `rule_expressions()` / `dashboard_expressions()`: the PromQL of the rules and the dashboard.
- `promtool()` / `kstatus()`: the real binaries, built by tools/k8s/build.sh (cached).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "charts" / "lockstep" / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = REPO / "charts" / "lockstep" / "files" / "grafana-dashboard.json"
ALERT_TESTS = REPO / "tests" / "alerts"
EXPOSITION_DIR = ALERT_TESTS / "exposition"
RUNBOOK = REPO / "docs" / "runbook.md"
BUILD_SCRIPT = REPO / "tools" / "k8s" / "build.sh"

# Labels a Prometheus scrape adds to every series (target labels); the exporter never sets them.
SCRAPE_LABELS = frozenset({"job", "instance", "pod", "container", "service", "endpoint"})
# Series of Prometheus itself that rule tests may use as neighbours of Lockstep's.
PROMETHEUS_SERIES = frozenset({"up"})

# Set with LOCKSTEP_UPDATE_SNAPSHOTS=1 to let e2e tests rewrite their committed captures.
UPDATE_SNAPSHOTS = os.environ.get("LOCKSTEP_UPDATE_SNAPSHOTS") == "1"


# --- what metrics.py defines ---------------------------------------------------------------


def defined_series() -> dict[str, frozenset[str]]:
    """Sample name -> label names, for every metric in lockstep.controller.metrics.REGISTRY."""
    from lockstep.controller import metrics

    found: dict[str, frozenset[str]] = {}
    for collector in _collectors(metrics):
        labels = frozenset(collector._labelnames)  # prometheus-client has no public accessor
        for family in collector.describe():
            for name, extra in _sample_names(family.name, family.type):
                found[name] = labels | extra
    # The per-migration state gauges and run metrics are custom collectors (controller.state_gauges,
    # controller.run_metrics).
    custom = (*metrics.migration_runs.describe(), *metrics.states.describe())
    for family in custom:
        for name, extra in _sample_names(family.name, family.type):
            found[name] = frozenset(family._labelnames) | extra
    return found


def _collectors(module: Any) -> Iterator[Any]:
    from prometheus_client.metrics import MetricWrapperBase

    seen: set[int] = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase) and id(value) not in seen:
            seen.add(id(value))
            yield value


def _sample_names(base: str, kind: str) -> list[tuple[str, frozenset[str]]]:
    none: frozenset[str] = frozenset()
    if kind == "counter":
        return [(f"{base}_total", none), (f"{base}_created", none)]
    if kind == "histogram":
        return [
            (f"{base}_bucket", frozenset({"le"})),
            (f"{base}_count", none),
            (f"{base}_sum", none),
            (f"{base}_created", none),
        ]
    return [(base, none)]


# --- what a real scrape shows -----------------------------------------------------------------


@dataclass
class Exposition:
    """Samples of one or more /metrics scrapes, reduced to what rules can depend on."""

    declared: set[str] = field(default_factory=set)  # families announced by # TYPE
    shapes: dict[str, set[frozenset[str]]] = field(default_factory=lambda: defaultdict(set))
    values: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    @classmethod
    def parse(cls, *texts: str) -> Exposition:
        exposition = cls()
        for text in texts:
            exposition.add(text)
        return exposition

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.declared.update(name for name, _ in _sample_names(family.name, family.type))
            for sample in family.samples:
                self.shapes[sample.name].add(frozenset(sample.labels))
                for label, value in sample.labels.items():
                    self.values[sample.name][label].add(value)

    def sample_names(self) -> set[str]:
        return {name for name, shapes in self.shapes.items() if shapes}

    def shape_set(self) -> set[tuple[str, frozenset[str]]]:
        return {(name, shape) for name, shapes in self.shapes.items() for shape in shapes}


def normalize_exposition(text: str, namespace: str, replacement: str) -> str:
    """A capture made stable for git: only the test's own namespace (renamed) and the series of
    no namespace; other tests' DatabaseMigrations in the same session are left out."""
    kept = []
    for line in text.splitlines():
        if 'namespace="' in line and f'namespace="{namespace}"' not in line:
            continue
        kept.append(line.replace(f'namespace="{namespace}"', f'namespace="{replacement}"'))
    return "\n".join(kept) + "\n"


def committed_exposition() -> Exposition:
    files = sorted(EXPOSITION_DIR.glob("*.prom"))
    if not files:
        raise AssertionError(f"no captured exposition in {EXPOSITION_DIR}")
    return Exposition.parse(*(f.read_text() for f in files))


# --- the rules and the dashboard ---------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in load_rules() if "alert" in rule}


def rule_expressions() -> dict[str, str]:
    return {rule.get("alert") or rule["record"]: rule["expr"] for rule in load_rules()}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return dashboard


def dashboard_panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def dashboard_expressions(dashboard: Mapping[str, Any] | None = None) -> dict[str, str]:
    """`<panel title> / <refId>` -> expr, for every Prometheus target (and templating query)."""
    dashboard = dashboard or load_dashboard()
    found: dict[str, str] = {}
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found[f"{panel.get('title')} / {target.get('refId')}"] = target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            found[f"variable {variable['name']}"] = _grafana_query_expr(query)
    return found


def _grafana_query_expr(query: str) -> str:
    """label_values(metric{...}, label) -> metric{...}; other queries are PromQL already."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    return match.group(1) if match else query


def substitute_grafana_variables(expr: str) -> str:
    """Make a dashboard expression plain PromQL: durations and template variables replaced."""
    for variable in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(variable, "5m")
    return re.sub(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}?", "value", expr)


# --- promtool test files ---------------------------------------------------------------------


@dataclass(frozen=True)
class InputSeries:
    file: str
    test: str
    name: str
    labels: Mapping[str, str]


_SERIES = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    match = _SERIES.match(text)
    if match is None:
        raise ValueError(f"not a series: {text!r}")
    labels: dict[str, str] = {}
    body = match.group(2) or ""
    position = 0
    while position < len(body):
        label = _LABEL.match(body, position)
        if label is None:
            raise ValueError(f"cannot read labels of {text!r} at {body[position:]!r}")
        labels[label.group(1)] = label.group(2)
        position = label.end()
    return match.group(1), labels


def rule_test_files() -> list[Path]:
    return sorted(ALERT_TESTS.glob("*_test.yaml"))


def input_series(files: Iterable[Path] | None = None) -> list[InputSeries]:
    found = []
    for path in files or rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for series in test.get("input_series", []):
                name, labels = parse_series(series["series"])
                found.append(InputSeries(path.name, test.get("name", "?"), name, labels))
    return found


# --- the real binaries -------------------------------------------------------------------------


def go_binary(name: str) -> Path:
    """A binary from tools/k8s/build.sh (built on first use, then cached outside the repo)."""
    override = os.environ.get("LOCKSTEP_K8S_BIN_DIR")
    if override and (Path(override) / name).exists():
        return Path(override) / name
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), name], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"building {name} failed:\n{result.stderr[-4000:]}")
    binary = Path(result.stdout.strip().splitlines()[-1]) / name
    assert binary.exists(), f"build.sh said {binary}, which does not exist"
    return binary


def promtool() -> Path:
    return go_binary("promtool")


def kstatus() -> Path:
    return go_binary("kstatus")


def kstatus_verdicts(binary: Path, objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The kstatus library's verdict on each object (one checker run for all of them)."""
    stream = "".join(json.dumps(obj) + "\n" for obj in objects)
    result = subprocess.run(
        [str(binary)], input=stream, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"kstatus failed ({result.returncode}): {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines()]
