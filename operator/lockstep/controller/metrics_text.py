"""The Prometheus text format (0.0.4) as prometheus_client.exposition.generate_latest writes it,
in the pieces the operator's own writers (`run_metrics`, `state_gauges`) put together.

generate_latest sorts, checks and escapes every sample's labels on its own; these writers know
their label names and escape each series' values once, which is where their time goes. Only
what those writers need: legacy-valid metric and label names (written as they are), label
values escaped as generate_latest escapes them, numbers as it formats them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

from prometheus_client.utils import floatToGoString

# How prometheus-client writes a float (Go's way: "+Inf", "1.7e+09"); untyped there.
go: Final[Callable[[float], str]] = floatToGoString

# 0.0 and -0.0 are one dict key but two texts: `Numbers` writes zeros from these.
_ZERO: Final = go(0.0)
_NEGATIVE_ZERO: Final = go(-0.0)


def escape(value: str) -> str:
    """A label value's escaping (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def header(name: str, documentation: str, kind: str) -> str:
    """A family's HELP and TYPE lines."""
    escaped = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


def label_order(names: Sequence[str]) -> list[int]:
    """The positions of `names` in the order generate_latest writes them (sorted by name)."""
    return sorted(range(len(names)), key=names.__getitem__)


def pairs(names: Sequence[str], order: Sequence[int], values: Sequence[str]) -> list[str]:
    """`name="value"` of each label, in `order`."""
    return [f'{names[index]}="{escape(values[index])}"' for index in order]


def braced(label_pairs: Sequence[str]) -> str:
    return "{" + ",".join(label_pairs) + "}" if label_pairs else ""


class Numbers:
    """`go`, each distinct value formatted once: a scrape's values are mostly a few (0, 1, bucket
    counts). One per scrape, so it holds no more than that scrape's values."""

    def __init__(self) -> None:
        self._texts: dict[float, str] = {}

    def __call__(self, value: float) -> str:
        if value == 0.0:
            return _NEGATIVE_ZERO if math.copysign(1.0, value) < 0 else _ZERO
        text = self._texts.get(value)
        if text is None:  # as for a NaN not found again (NaN != NaN): the same text again
            text = self._texts[value] = go(value)
        return text
