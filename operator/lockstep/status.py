"""The DatabaseMigration status, typed: what planning writes and the controller, the kubectl
plugin, metrics and the gate read.

The shapes follow the CRD's status schema (crds/databasemigrations.yaml). Every field is optional
(`total=False`): a new resource has an empty status, and older operators wrote fewer fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class ActiveJob(TypedDict, total=False):
    name: str
    attempt: int
    startedAt: str


# "from" is a Python keyword: the functional form spells the field names as the CRD does.
Run = TypedDict(
    "Run",
    {
        "job": str,
        "direction": str,
        "result": str,
        "reason": str,
        "message": str,
        "specHash": str,
        "image": str,
        "startedAt": str,
        "finishedAt": str,
        "durationSeconds": float,
        "from": str,
        "to": str,
        "logTail": str,
    },
    total=False,
)

# The runner's rendered, classified plan as kept in status.plan (see planning.approval).
Plan = TypedDict(
    "Plan",
    {
        "hash": str,
        "specHash": str,
        "job": str,
        "stale": bool,
        "available": bool,
        "unavailableReason": str,
        "classification": str,
        "direction": str,
        "from": str,
        "to": str,
        "migrations": list[Any],
        "migrationsOmitted": int,
        "statements": int,
        "summary": dict[str, Any],
        "destructive": list[Any],
        "findings": list[dict[str, Any]],
        "findingsOmitted": int,
    },
    total=False,
)


class MigrationStatus(TypedDict, total=False):
    observedGeneration: int
    specHash: str
    appliedRevision: str
    appliedImage: str
    targetRevision: str
    pendingCount: int
    failures: int
    nextRetryAt: str
    retryToken: str
    activeJob: ActiveJob
    lastRun: Run
    history: list[Run]
    plan: Plan
    gatedPods: int
    inputMissingSince: str
    conditions: list[Condition]


def migration_status(migration: Mapping[str, Any]) -> MigrationStatus:
    """The status of a DatabaseMigration body as read from the API ({} before the first write)."""
    return cast(MigrationStatus, migration.get("status") or {})
