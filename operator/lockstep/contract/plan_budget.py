"""A plan's report cut to a byte budget, with every dropped item counted.

Findings go first, then migrations, then the destructive lines are shortened and dropped;
``findingsOmitted``, ``migrationsOmitted`` and ``destructiveOmitted`` count what was cut, so
nobody mistakes a cut list for a whole one. Hash, classification and direction always stay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from lockstep.contract import report as wire


def compact(payload: dict[str, Any], limit: int) -> dict[str, Any]:
    """``payload`` (a plan's whole report) cut to at most ``limit`` bytes of JSON."""
    for shrink in _SHRINKS:
        if wire.fits(payload, limit):
            return payload
        payload = shrink(payload, limit)
    return payload if wire.fits(payload, limit) else _bare(payload)


def flat_clip(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace as one space), clipped to ``limit``."""
    return wire.clip(" ".join(text.split()), limit)


def _keep_head(payload: dict[str, Any], key: str, counter: str, limit: int) -> dict[str, Any]:
    """Keep the longest head of ``payload[key]`` that fits; add what was cut to ``counter``."""
    items: list[Any] = payload[key]
    already = int(payload.get(counter, 0))

    def render(count: int) -> str:
        kept = min(count, len(items))
        return wire.encode({**payload, key: items[:kept], counter: already + len(items) - kept})

    keep = min(len(items), wire.longest_fitting(render, limit))
    trimmed = {**payload, key: items[:keep]}
    if keep < len(items) or counter in payload:
        trimmed[counter] = already + len(items) - keep
    return trimmed


def _drop_findings(payload: dict[str, Any], limit: int) -> dict[str, Any]:
    return _keep_head(payload, "findings", "findingsOmitted", limit)


def _drop_migrations(payload: dict[str, Any], limit: int) -> dict[str, Any]:
    return _keep_head(payload, "migrations", "migrationsOmitted", limit)


def _shorten_destructive(payload: dict[str, Any], _limit: int) -> dict[str, Any]:
    return {**payload, "destructive": [flat_clip(line, 60) for line in payload["destructive"]]}


def _drop_destructive(payload: dict[str, Any], limit: int) -> dict[str, Any]:
    return _keep_head(payload, "destructive", "destructiveOmitted", limit)


_SHRINKS: Final[tuple[Callable[[dict[str, Any], int], dict[str, Any]], ...]] = (
    _drop_findings,
    _drop_migrations,
    _shorten_destructive,
    _drop_destructive,
)


def _bare(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The last resort: what identifies the plan and what approving it means."""
    bare = {
        key: payload[key]
        for key in ("hash", "available", "classification", "direction", "statements")
    }
    for key in ("from", "to", "unavailableReason"):
        if key in payload:
            bare[key] = flat_clip(str(payload[key]), 100)
    return bare
