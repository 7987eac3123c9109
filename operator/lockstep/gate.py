"""The rollout gate, as pure decisions: which pods wait for which migration.

An application pod labelled `lockstep.dev/wait-for: <DatabaseMigration>` gets the scheduling gate
`lockstep.dev/migration` at creation unless its image is one the database has been migrated for.
The scheduler leaves a gated pod alone, so the old ReplicaSet keeps serving; Lockstep removes
the gate once the migration succeeds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockstep import conditions, constants
from lockstep.status import migration_status

GATE = f"{constants.GROUP}/migration"
WAIT_FOR_LABEL = f"{constants.GROUP}/wait-for"
CONTAINER_ANNOTATION = f"{constants.GROUP}/container"


@dataclass(frozen=True)
class Verdict:
    gate: bool
    reason: str
    message: str


def pod_image(pod: Mapping[str, Any]) -> str | None:
    """The image of the container that needs the schema: named by annotation, else the first."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    wanted = ((pod.get("metadata") or {}).get("annotations") or {}).get(CONTAINER_ANNOTATION)
    for container in containers:
        if wanted is None or container.get("name") == wanted:
            image = container.get("image")
            return str(image) if image else None
    return None


def migrated_images(migration: Mapping[str, Any]) -> set[str]:
    """Images whose migrations the database has: the applied one and older successful ones.

    Older images stay allowed (expand/contract keeps the schema backward compatible), so a
    crashed old pod can be replaced while a new migration is still running.
    """
    status = migration_status(migration)
    images = {str(status["appliedImage"])} if status.get("appliedImage") else set()
    for run in status.get("history") or []:
        if run.get("result") == "Succeeded" and run.get("image"):
            images.add(str(run["image"]))
    return images


def is_ready(migration: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation."""
    metadata, status = migration.get("metadata") or {}, migration_status(migration)
    if status.get("observedGeneration") != metadata.get("generation"):
        return False
    return conditions.is_true(status.get("conditions") or [], constants.READY)


def decide(pod: Mapping[str, Any], migration: Mapping[str, Any] | None, name: str) -> Verdict:
    """Whether a new pod must wait for the DatabaseMigration `name` (None: it does not exist)."""
    if migration is None:
        return Verdict(
            True,
            "MigrationNotFound",
            f"pod waits for DatabaseMigration {name}, which does not exist in this namespace",
        )
    image = pod_image(pod)
    spec_image = (migration.get("spec") or {}).get("image")
    if spec_image is None:
        # Built-in sources (SQL/Alembic from a ConfigMap) name no app image: wait for Ready.
        if is_ready(migration):
            return Verdict(False, "Migrated", f"DatabaseMigration {name} is Ready")
        return Verdict(True, "MigrationPending", f"DatabaseMigration {name} is not Ready yet")
    if image is not None and image in migrated_images(migration):
        return Verdict(False, "Migrated", f"the database is migrated for {image}")
    return Verdict(
        True,
        "MigrationPending",
        f"the database is not yet migrated for {image}: waiting for DatabaseMigration {name}",
    )


def has_gate(pod: Mapping[str, Any]) -> bool:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == GATE for g in gates)


def gate_patch(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSONPatch adding our scheduling gate (keeping any gates others added)."""
    if has_gate(pod):
        return []
    if (pod.get("spec") or {}).get("schedulingGates"):
        return [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GATE}}]
    return [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}]


def gates_without_ours(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return [dict(g) for g in gates if g.get("name") != GATE]


def admission_response(
    uid: str, patch: list[dict[str, Any]], warning: str | None
) -> dict[str, Any]:
    """An AdmissionReview response that allows the pod, with our patch if any."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if warning:
        response["warnings"] = [warning]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
