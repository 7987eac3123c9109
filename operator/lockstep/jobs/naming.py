"""What identifies one run: its request, its Job's name, labels and owner.

The Job name is derived from the DatabaseMigration name, the spec hash and the attempt number, so
creating the same run twice is impossible: the API server answers the second create with 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockstep import constants

HASH_LENGTH = 8
PLAN_SALT_LENGTH = 16


@dataclass(frozen=True)
class Owner:
    """The DatabaseMigration a Job belongs to."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class JobRequest:
    """One attempt at bringing the database to `target`.

    A downgrade runs with `image`, the image that applied the newer revision: only it holds the
    down migrations.
    """

    attempt: int
    target: str
    downgrade: bool = False
    image: str | None = None
    # "plan" renders and classifies what a run would do (read-only, no lock); "migrate" runs it.
    phase: str = constants.PHASE_MIGRATE
    # Identifies the spec in the plan hash, so an approval never carries over to another spec.
    plan_salt: str = ""
    # The approved plan: the runner refuses (PlanChanged) if what it would run differs.
    expect_plan: str | None = None
    # Where the real database is now (a revision, or "base"): a shadow rehearsal goes back there.
    database_at: str = "base"

    @property
    def is_plan(self) -> bool:
        return self.phase == constants.PHASE_PLAN


def plan_salt(spec_hash: str) -> str:
    return spec_hash[:PLAN_SALT_LENGTH]


def job_name(
    migration: str, spec_hash: str, attempt: int, phase: str = constants.PHASE_MIGRATE
) -> str:
    """`<name>-<hash8>[-r<n>]` for runs, `<name>-<hash8>-p<n>` for plans (≤ 63 characters)."""
    base = f"{migration}-{spec_hash[:HASH_LENGTH]}"
    if phase == constants.PHASE_PLAN:
        return f"{base}-p{attempt}"
    return base if attempt == 0 else f"{base}-r{attempt}"


def attempt_of(name: str, migration: str, spec_hash: str, phase: str) -> int | None:
    """The attempt number in a Job name `job_name` made for this spec and phase; else None."""
    base = f"{migration}-{spec_hash[:HASH_LENGTH]}"
    if phase != constants.PHASE_PLAN and name == base:
        return 0
    marker = f"{base}-p" if phase == constants.PHASE_PLAN else f"{base}-r"
    suffix = name.removeprefix(marker)
    if suffix == name or not suffix.isdigit():
        return None
    return int(suffix)


def job_labels(
    owner: Owner, spec_hash: str, database_key: str, carried: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Lockstep's labels over `carried`: the DatabaseMigration's labels its operator instance's
    selector names (controller.scope.carried_labels), so the instance's Job watch matches."""
    return {
        **(carried or {}),
        constants.LABEL_NAME: "lockstep",
        constants.LABEL_INSTANCE: owner.name,
        constants.LABEL_COMPONENT: "migration",
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_PART_OF: "lockstep",
        constants.LABEL_MIGRATION: owner.name,
        constants.LABEL_DATABASE: database_key,
        constants.LABEL_SPEC_HASH: spec_hash[:HASH_LENGTH],
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
