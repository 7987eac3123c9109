"""Just enough PromQL reading to ask which series an expression selects.

Not a parser: a tokenizer that finds vector selectors (metric names and their label matchers)
and the labels named in `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` clauses.
`promtool check rules` is what proves an expression is valid PromQL; this only answers "which
metric names and label names does it reference" so that tests can compare them with the ones
the exporter defines and really produces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Grafana's template variables, replaced by something PromQL accepts before reading.
GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0x[0-9a-fA-F]+|[0-9][0-9a-zA-Z_.]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=@])
  | (?P<punct>[{}()\[\],])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    """One vector selector: `name{matchers}` (name may come from `__name__`)."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    @property
    def label_names(self) -> frozenset[str]:
        return frozenset(m.label for m in self.matchers if m.label != "__name__")


@dataclass
class Reading:
    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metric_names(self) -> set[str]:
        return {s.name for s in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    for variable in GRAFANA_DURATIONS:
        expr = expr.replace(variable, "5m")
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(
                f"cannot read PromQL at {expr[position : position + 20]!r} in {expr!r}"
            )
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            found.append((kind, match.group()))
        position = match.end()
    return found


def read(expr: str) -> Reading:
    """The selectors and grouping labels of one expression."""
    toks = tokens(expr)
    reading = Reading()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        word = text.lower()
        if kind == "ident" and word in GROUPING:
            if following == "(":
                labels, i = _label_list(toks, i + 2)
                reading.grouping_labels |= labels
                continue
            i += 1
            continue
        if kind == "ident" and following == "(" and word not in KEYWORDS:
            i += 2  # a function or an aggregation: its arguments are read as they come
            continue
        if kind == "ident" and following.lower() in ("by", "without"):
            i += 1  # an aggregation with its grouping first: `max by (a) (x)`
            continue
        if kind == "ident" and word in KEYWORDS:
            i += 1
            continue
        if kind == "ident":
            matchers: tuple[Matcher, ...] = ()
            i += 1
            if i < len(toks) and toks[i][1] == "{":
                matchers, i = _matchers(toks, i + 1)
            reading.selectors.append(Selector(text, matchers))
            continue
        if text == "{":  # a selector without a bare name: {__name__="..."}
            matchers, i = _matchers(toks, i + 1)
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            if len(names) != 1:
                raise ValueError(f"selector without one exact __name__ in {expr!r}")
            reading.selectors.append(Selector(names[0], matchers))
            continue
        if text == "[":  # a range or subquery: durations only
            while i < len(toks) and toks[i][1] != "]":
                i += 1
        i += 1
    return reading


def _label_list(toks: list[tuple[str, str]], i: int) -> tuple[set[str], int]:
    labels: set[str] = set()
    while i < len(toks) and toks[i][1] != ")":
        kind, text = toks[i]
        if kind == "ident":
            labels.add(text)
        elif kind == "string":
            labels.add(_unquote(text))
        i += 1
    return labels, i + 1


def _matchers(toks: list[tuple[str, str]], i: int) -> tuple[tuple[Matcher, ...], int]:
    found: list[Matcher] = []
    while i < len(toks) and toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        label, op, value = toks[i][1], toks[i + 1][1], toks[i + 2]
        if value[0] != "string":
            raise ValueError(f"matcher {label}{op} without a quoted value")
        found.append(
            Matcher(_unquote(label) if label[0] in "\"'" else label, op, _unquote(value[1]))
        )
        i += 3
    return tuple(found), i + 1


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)
