"""Plans and approvals, as pure functions over `status.plan` and the spec.

A plan says what a run will execute and whether any of it destroys or breaks something. Its hash
covers the spec (the salt) and the rendered SQL, so an approval names exactly one plan: an
approval of another plan, or of the same SQL under another spec, never applies.

The runner renders and classifies plans (`lockstep plan`, `lockstep run --plan-salt`); tools that
run in the user's image cannot show their SQL beforehand, so their plan is "unavailable" and, under
`approval: Destructive`, always needs a person (nothing proves it safe).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, cast

from lockstep import constants
from lockstep.model import Spec
from lockstep.status import MigrationStatus, Plan

ADDITIVE = "Additive"
DESTRUCTIVE = "Destructive"
UNKNOWN = "Unknown"
# Room for the findings in Event and condition messages (Events are capped at 1 KiB).
SUMMARY_FINDINGS = 3


def current_plan(status: MigrationStatus, salt: str) -> Plan | None:
    """`status.plan` if it was made for this spec, else None (a new spec needs a new plan)."""
    plan = status.get("plan")
    if isinstance(plan, Mapping) and plan_for_spec(status, salt) and not plan.get("stale"):
        return plan
    return None


def plan_for_spec(status: Mapping[str, Any], salt: str) -> bool:
    """Whether status.plan was made for this spec (it may be stale: the database moved)."""
    plan = status.get("plan")
    return isinstance(plan, Mapping) and plan.get("specHash") == salt and bool(plan.get("hash"))


def describes(plan: Mapping[str, Any], downgrade: bool) -> bool:
    """Whether the plan is of the run about to start: an upgrade plan never approves a rollback."""
    direction = plan.get("direction")
    if not plan.get("available", True) or direction in (None, "None"):
        return True
    return bool(direction == ("Downgrade" if downgrade else "Upgrade"))


def unavailable_plan(spec: Spec, salt: str) -> Plan:
    """The plan of a tool that runs in the user's image: Lockstep cannot render its SQL."""
    reason = (
        f"tool {spec.tool} runs its migrations as code in your image ({spec.image}) and cannot "
        "print their SQL before the run; Lockstep renders plans for tool sql and for Alembic "
        "(offline --sql), in a ConfigMap or an image"
    )
    digest = hashlib.sha256(f"{salt}\nunavailable\n{spec.tool}\n{spec.image}".encode())
    return {
        "hash": digest.hexdigest()[:16],
        "specHash": salt,
        "available": False,
        "unavailableReason": reason,
        "classification": UNKNOWN,
        "statements": 0,
    }


def needs_approval(spec: Spec, plan: Mapping[str, Any]) -> bool:
    if spec.approval == "Always":
        return True
    if spec.approval == "Destructive":
        return plan.get("classification") != ADDITIVE
    return False


def why_approval(spec: Spec, plan: Mapping[str, Any]) -> str:
    if not plan.get("available", True):
        reason = plan.get("unavailableReason") or "the plan is unavailable"
        return f"the plan cannot be classified ({reason})"
    if plan.get("classification") == DESTRUCTIVE:
        return f"the plan destroys or breaks something: {findings_summary(plan)}"
    return f"spec.approval is {spec.approval}"


def awaiting_message(name: str, spec: Spec, plan: Mapping[str, Any], approved: str | None) -> str:
    plan_hash = plan["hash"]
    message = (
        f"plan {plan_hash} needs approval: {why_approval(spec, plan)}. Review it with "
        f"`kubectl lockstep describe {name}`, then approve it with `kubectl lockstep approve "
        f"{name}` (or annotate {constants.ANNOTATION_APPROVE}={plan_hash})"
    )
    if approved and approved != plan_hash:
        message += f"; the approval of plan {approved} does not name this plan and is ignored"
    return message


def ignored_message(plan: Mapping[str, Any], approved: str) -> str:
    return (
        f"{constants.ANNOTATION_APPROVE}={approved} names another plan: the current plan is "
        f"{plan['hash']} (a new spec or a changed database makes a new plan); approval ignored"
    )


def planned_message(plan: Mapping[str, Any]) -> str:
    """One line for the Planned Event: size, classification and the first findings."""
    if not plan.get("available", True):
        return f"plan {plan['hash']} unavailable: {plan.get('unavailableReason', '')}"
    migrations = plan.get("migrations") or []
    size = f"{plan.get('statements', 0)} statement(s) in {len(migrations)} migration(s)"
    text = f"plan {plan['hash']}: {size}, {plan.get('classification', UNKNOWN)}"
    if plan.get("classification") == DESTRUCTIVE:
        text += f": {findings_summary(plan)}"
    return text


def findings_summary(plan: Mapping[str, Any]) -> str:
    findings = [f for f in plan.get("findings") or [] if f.get("severity") != "info"]
    shown = [
        f"{f.get('file')}:{f.get('line')} {f.get('rule')} ({_clip(str(f.get('statement', '')))})"
        for f in findings[:SUMMARY_FINDINGS]
    ]
    more = len(findings) - len(shown) + int(plan.get("findingsOmitted") or 0)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def stored_plan(plan: Mapping[str, Any], salt: str, job: str) -> Plan:
    """The runner's plan as kept in status: tied to the spec it was made for and its Job."""
    # The runner's report is JSON read from a termination message: typed from here on.
    return cast(Plan, {**dict(plan), "specHash": salt, "job": job})


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
