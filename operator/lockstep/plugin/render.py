"""Text for `kubectl lockstep`: tables, plans, JSON and YAML (describe pages: plugin.describe).

Pure: every function takes the objects (plain dicts), the current time and whether to colour,
and returns a string. Colours are ANSI codes around cells padded first, so columns line up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from lockstep import timestamps
from lockstep.plugin import state
from lockstep.plugin.state import Tone

_CODES: dict[Tone, str] = {"ok": "32", "busy": "33", "bad": "31", "plain": ""}
RESULT_TONES: dict[str, Tone] = {"Succeeded": "ok", "Running": "busy", "Failed": "bad"}
_CLASS_TONES: dict[str, Tone] = {"Additive": "ok", "Unknown": "busy", "Destructive": "bad"}

Cell = tuple[str, Tone]


def paint(text: str, tone: Tone, color: bool) -> str:
    code = _CODES[tone]
    return f"\x1b[{code}m{text}\x1b[0m" if color and code and text else text


def parse_time(value: Any) -> datetime | None:
    """A time from the resource as shown to people: None when absent or not a time; UTC if naive."""
    if not isinstance(value, str):
        return None
    try:
        moment = timestamps.parse(value)
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """Time since `value` (an RFC 3339 string) the way kubectl prints ages: 45s, 3m10s, 5h, 2d."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    return duration((now - moment).total_seconds())


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if minutes < 10:
        return _pair(minutes, "m", whole % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    return _pair(days // 365, "y", days % 365, "d")


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], color: bool) -> str:
    """Columns three spaces apart like kubectl's; widths from the text without colour codes."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(text)) for w, (text, _) in zip(widths, row, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [
            paint(text.ljust(w) if i < len(row) - 1 else text, tone, color)
            for i, ((text, tone), w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


# --- status -----------------------------------------------------------------------------


def last_run_cell(migration: Mapping[str, Any], now: datetime) -> Cell:
    status = state.status_of(migration)
    active = status.get("activeJob") or {}
    if active.get("name"):
        return f"Running {age(active.get('startedAt'), now)}", "busy"
    run = status.get("lastRun") or {}
    result = str(run.get("result") or "")
    if not result:
        return "-", "plain"
    when = run.get("finishedAt") or run.get("startedAt")
    return f"{result} {age(when, now)}", RESULT_TONES.get(result, "plain")


def status_table(
    migrations: Sequence[Mapping[str, Any]], all_namespaces: bool, now: datetime, color: bool
) -> str:
    headers = ["NAME", "TOOL", "APPLIED", "TARGET", "STATE", "LAST RUN", "GATED"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows: list[list[Cell]] = []
    for migration in migrations:
        spec, status = state.spec_of(migration), state.status_of(migration)
        current = state.state_of(migration)
        row: list[Cell] = [
            (state.name_of(migration), "plain"),
            (str(spec.get("tool") or "-"), "plain"),
            (str(status.get("appliedRevision") or "-"), "plain"),
            (str(spec.get("target") or "head"), "plain"),
            (current.label, current.tone),
            last_run_cell(migration, now),
            (str(status.get("gatedPods") or 0), "plain"),
        ]
        if all_namespaces:
            row.insert(0, (state.namespace_of(migration), "plain"))
        rows.append(row)
    return table(headers, rows, color)


def no_migrations(namespace: str | None) -> str:
    where = f"in namespace {namespace!r}" if namespace else "in any namespace"
    return f"No DatabaseMigrations found {where}.\n"


# --- plan -------------------------------------------------------------------------------


def plan_lines(plan: Mapping[str, Any], color: bool) -> list[str]:
    """The plan, indented by two spaces: what approving it lets Lockstep do."""
    classification = str(plan.get("classification") or "Unknown")
    lines = [
        f"  Hash:            {plan.get('hash', '-')}",
        "  Classification:  "
        + paint(classification, _CLASS_TONES.get(classification, "plain"), color),
    ]
    if plan.get("available") is False:
        lines.append(
            f"  Available:       no ({plan.get('unavailableReason') or 'no reason given'})"
        )
    direction = plan.get("direction")
    if direction or plan.get("to"):
        start = plan.get("from") or "empty"
        lines.append(f"  Direction:       {direction or 'Upgrade'} {start} → {plan.get('to', '?')}")
    migrations = [str(m) for m in plan.get("migrations") or []]
    if migrations:
        more = _more(plan.get("migrationsOmitted"))
        lines.append(f"  Migrations:      {', '.join(migrations)}{more}")
    if plan.get("statements") is not None:
        lines.append(f"  Statements:      {plan['statements']}{_summary(plan.get('summary'))}")
    destructive = [str(d) for d in plan.get("destructive") or []]
    if destructive:
        lines.append("  Destructive:")
        lines.extend(f"    {paint(item, 'bad', color)}" for item in destructive)
        if plan.get("destructiveOmitted"):
            lines.append(f"   {_more(plan['destructiveOmitted'])}")
    lines.extend(_findings(plan, color))
    if plan.get("stale"):
        lines.append("  Stale:           yes (the database moved since; Lockstep plans again)")
    return lines


def _more(omitted: Any) -> str:
    return f" ... and {omitted} more not kept in the status" if omitted else ""


def _summary(summary: Any) -> str:
    if not isinstance(summary, Mapping) or not summary:
        return ""
    return " (" + ", ".join(f"{kind} {count}" for kind, count in summary.items()) + ")"


_SEVERITY_TONES: dict[str, Tone] = {
    "destructive": "bad",
    "breaking": "bad",
    "error": "bad",
    "warning": "busy",
    "info": "plain",
}


def _findings(plan: Mapping[str, Any], color: bool) -> list[str]:
    findings = [f for f in plan.get("findings") or [] if isinstance(f, Mapping)]
    omitted = int(plan.get("findingsOmitted") or 0)
    if not findings and not omitted:
        return []
    rows: list[list[Cell]] = []
    for finding in findings:
        where = str(finding.get("file") or "-")
        if finding.get("line") is not None:
            where = f"{where}:{finding['line']}"
        severity = str(finding.get("severity") or "-")
        rows.append(
            [
                (where, "plain"),
                (str(finding.get("rule") or "-"), "plain"),
                (severity, _SEVERITY_TONES.get(severity.lower(), "plain")),
                (str(finding.get("message") or ""), "plain"),
            ]
        )
    lines = ["  Findings:"]
    if rows:
        text = table(["WHERE", "RULE", "SEVERITY", "MESSAGE"], rows, color)
        lines.extend(f"    {line}" for line in text.splitlines())
    if omitted:
        lines.append(f"    ... and {omitted} more finding(s) not kept in the status")
    return lines


def approval_question(name: str, plan: Mapping[str, Any]) -> str:
    return f"Approve plan {plan.get('hash')} for {name}? [y/N] "


# --- machine-readable -------------------------------------------------------------------


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects the way kubectl prints them: a v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": [state.clean(i) for i in items]}


def dump(document: Mapping[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
