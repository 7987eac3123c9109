"""`kubectl lockstep describe`: one migration's page, section by section (pure).

Like plugin.render, every function takes the objects (plain dicts), the current time and whether
to colour, and returns text.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lockstep import constants
from lockstep.plugin import render, state
from lockstep.plugin.state import Tone


def describe(migration: Mapping[str, Any], now: datetime, color: bool) -> str:
    sections = [
        _header(migration, color),
        _spec_section(state.spec_of(migration)),
        _status_section(migration, now),
        _conditions_section(migration, now, color),
        _plan_section(migration, color),
        _history_section(migration, now, color),
        _log_section(migration),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def _header(migration: Mapping[str, Any], color: bool) -> list[str]:
    current = state.state_of(migration)
    detail = f" ({current.reason})" if current.reason and current.reason != current.label else ""
    lines = [
        f"Name:       {state.name_of(migration)}",
        f"Namespace:  {state.namespace_of(migration)}",
        f"State:      {render.paint(current.label, current.tone, color)}{detail}",
    ]
    if current.message:
        lines.append(f"Message:    {current.message}")
    return lines


def _credentials_source(database: Mapping[str, Any]) -> str:
    """Where the database comes from: Secret and key names, never a value."""
    connection = database.get("connection")
    if isinstance(connection, Mapping):
        names = sorted(
            {
                str(part["secretKeyRef"].get("name"))
                for part in connection.values()
                if isinstance(part, Mapping) and isinstance(part.get("secretKeyRef"), Mapping)
            }
        )
        return f"connection from Secret {', '.join(names) or '-'}"
    secret = database.get("urlSecretRef") or {}
    return f"Secret {secret.get('name', '-')}, key {secret.get('key', '-')}"


def _spec_section(spec: Mapping[str, Any]) -> list[str]:
    database = spec.get("database") or {}
    config_map = (spec.get("source") or {}).get("configMapRef") or {}
    retry = spec.get("retry") or {}
    lines = ["Spec:", f"  Tool:        {spec.get('tool', '-')}"]
    if spec.get("image"):
        lines.append(f"  Image:       {spec['image']}")
    if config_map:
        lines.append(f"  Source:      ConfigMap {config_map.get('name')}")
    lines += [
        f"  Target:      {spec.get('target') or 'head'}",
        f"  Database:    {database.get('engine', '-')} ({_credentials_source(database)})",
        f"  Downgrade:   {spec.get('downgrade') or 'Forbid'}",
        f"  Approval:    {spec.get('approval') or 'None'}",
        f"  When:        {spec.get('when') or 'BeforeRollout'}",
    ]
    if retry:
        lines.append(
            f"  Retry:       limit {retry.get('limit', '-')}, backoff "
            f"{retry.get('backoffSeconds', '-')}s up to {retry.get('maxBackoffSeconds', '-')}s"
        )
    if spec.get("suspend"):
        lines.append("  Suspend:     true")
    return lines


def _status_section(migration: Mapping[str, Any], now: datetime) -> list[str]:
    status = state.status_of(migration)
    generation = (migration.get("metadata") or {}).get("generation", "-")
    lines = [
        "Status:",
        f"  Applied:     {status.get('appliedRevision') or '-'}",
        f"  Target:      {status.get('targetRevision') or '-'}",
        f"  Generation:  observed {status.get('observedGeneration', '-')} of {generation}",
        f"  Gated pods:  {status.get('gatedPods') or 0}",
    ]
    if status.get("failures"):
        lines.append(f"  Failures:    {status['failures']}")
    if status.get("nextRetryAt"):
        lines.append(f"  Next retry:  {status['nextRetryAt']}")
    active = status.get("activeJob") or {}
    if active.get("name"):
        lines.append(
            f"  Active job:  {active['name']} (attempt {active.get('attempt', '?')}, "
            f"{render.age(active.get('startedAt'), now)})"
        )
    return lines


def _conditions_section(migration: Mapping[str, Any], now: datetime, color: bool) -> list[str]:
    found = state.status_of(migration).get("conditions") or []
    if not found:
        return ["Conditions:  <none>"]
    rows: list[list[render.Cell]] = []
    for item in found:
        kind, status = str(item.get("type", "")), str(item.get("status", ""))
        rows.append(
            [
                (kind, "plain"),
                (status, _condition_tone(kind, status)),
                (str(item.get("reason", "")), "plain"),
                (render.age(item.get("lastTransitionTime"), now), "plain"),
                (str(item.get("message", "")), "plain"),
            ]
        )
    text = render.table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows, color)
    return ["Conditions:", *(f"  {line}" for line in text.splitlines())]


def _condition_tone(kind: str, status: str) -> Tone:
    if kind == constants.READY:
        return "ok" if status == "True" else "busy"
    if kind == constants.RECONCILING:
        return "busy" if status == "True" else "plain"
    return "bad" if status == "True" else "plain"  # Stalled, Drifted: abnormal when true


def _plan_section(migration: Mapping[str, Any], color: bool) -> list[str]:
    plan = state.plan_of(migration)
    if plan is None:
        return ["Plan:        <none>"]
    approved = state.annotations_of(migration).get(constants.ANNOTATION_APPROVE)
    lines = ["Plan:", *render.plan_lines(plan, color)]
    if approved:
        mark = "this plan" if approved == plan.get("hash") else "another plan"
        lines.append(f"  Approved:        {approved} ({mark})")
    return lines


def _history_section(migration: Mapping[str, Any], now: datetime, color: bool) -> list[str]:
    runs = [r for r in state.status_of(migration).get("history") or [] if isinstance(r, Mapping)]
    if not runs:
        return ["History:     <none>"]
    rows: list[list[render.Cell]] = []
    for run in runs:  # the operator keeps them newest first
        result = str(run.get("result") or "-")
        seconds = run.get("durationSeconds")
        rows.append(
            [
                (str(run.get("job") or "-"), "plain"),
                (str(run.get("direction") or "-"), "plain"),
                (f"{run.get('from') or 'empty'} → {run.get('to') or '-'}", "plain"),
                (result, render.RESULT_TONES.get(result, "plain")),
                (str(run.get("reason") or "-"), "plain"),
                (render.age(run.get("startedAt") or run.get("finishedAt"), now), "plain"),
                (f"{float(seconds):.1f}s" if seconds is not None else "-", "plain"),
            ]
        )
    headers = ["JOB", "DIRECTION", "REVISIONS", "RESULT", "REASON", "AGE", "DURATION"]
    text = render.table(headers, rows, color)
    return ["History (newest first):", *(f"  {line}" for line in text.splitlines())]


def _log_section(migration: Mapping[str, Any]) -> list[str]:
    run = state.status_of(migration).get("lastRun") or {}
    tail = str(run.get("logTail") or "").rstrip("\n")
    if not tail:
        hint = f"kubectl lockstep logs {state.name_of(migration)}"
        return [f"Log tail:    <none> (Lockstep keeps it for failed runs; the Job's log: {hint})"]
    lines = tail.split("\n")
    return [f"Log tail of {run.get('job') or 'the last run'}:", *(f"  {line}" for line in lines)]
