"""The small PromQL reader the rule and dashboard tests rely on (tests/support/promql.py)."""

from __future__ import annotations

import pytest

import promql


def names(expr: str) -> list[str]:
    return [s.name for s in promql.read(expr).selectors]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", ["up"]),
        ("max by (namespace, name) (a_b) == 1 unless on (namespace, name) c", ["a_b", "c"]),
        ("sum without (le) (rate(x_bucket[5m]))", ["x_bucket"]),
        ('histogram_quantile(0.95, sum by (le) (rate(h_bucket{a=~"x|y"}[1h])))', ["h_bucket"]),
        ("time() - m > 1800", ["m"]),
        ("max(l) < 1 or absent(l)", ["l", "l"]),
        ('{__name__="by_name", job="j"}', ["by_name"]),
        ("a offset 5m and bool b", ["a", "b"]),
        ('count_values("v", x) > Inf', ["x"]),
        ("rate(x[5m:1m] @ end())", ["x"]),
        ("sum(x) by (a) / on (a) group_left (b) y", ["x", "y"]),
        ("-x ^ 2 % 3", ["x"]),
        ('label_replace(x, "dst", "$1", "src", "(.*)")', ["x"]),
    ],
)
def test_selectors(expr: str, expected: list[str]) -> None:
    assert names(expr) == expected


def test_matchers_and_grouping_labels() -> None:
    reading = promql.read(
        'sum by (result) (rate(runs_total{namespace=~"$ns", tool!="sql"}[5m]))'
        " / ignoring (x) group_right (y) z"
    )
    (runs, z) = reading.selectors
    assert runs.matchers == (
        promql.Matcher("namespace", "=~", "$ns"),
        promql.Matcher("tool", "!=", "sql"),
    )
    assert runs.label_names == {"namespace", "tool"}
    assert z.matchers == ()
    assert reading.grouping_labels == {"result", "x", "y"}


def test_grafana_durations_are_accepted() -> None:
    assert names("rate(x[$__rate_interval]) + rate(y[$__interval])") == ["x", "y"]


def test_unreadable_input_is_an_error() -> None:
    with pytest.raises(ValueError):
        promql.read("x{a=b}")
    with pytest.raises(ValueError):
        promql.read("x ; y")
