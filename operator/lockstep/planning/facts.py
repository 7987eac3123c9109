"""The facts planning reads and the Decision it returns: plain frozen data, no I/O.

The controller gathers these from the cluster (Jobs, pods, Secrets, the version table) before
planning starts; `chain.plan` turns one `Observed` into one `Decision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lockstep import constants
from lockstep.jobs.naming import JobRequest
from lockstep.model import Spec
from lockstep.status import MigrationStatus

JobState = Literal["Active", "Succeeded", "Failed"]


EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class JobView:
    """The facts planning needs about one migration Job."""

    name: str
    spec_hash: str
    attempt: int
    state: JobState
    downgrade: bool = False
    phase: str = constants.PHASE_MIGRATE
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a finished Job left behind, read before the Job or its pod can disappear."""

    job: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    log_tail: str = ""
    from_revision: str | None = None
    to_revision: str | None = None
    applied_revision: str | None = None
    lock_wait_seconds: float | None = None
    # The rendered, classified plan the runner reported (status.plan's shape, without specHash).
    plan: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LockWait:
    """The running Job's lock sidecar waits for the database lock (or gave up waiting)."""

    job: str
    since: datetime | None
    timed_out: bool


@dataclass(frozen=True)
class Rollout:
    """Whether one workload of spec.rollout.workloads has fully rolled out."""

    kind: str
    name: str
    done: bool
    message: str


@dataclass(frozen=True)
class DriftReading:
    """The revision the version table records now (None: the table is empty)."""

    revision: str | None


@dataclass(frozen=True)
class ConfigError:
    """Input the operator cannot act on until a person fixes it (missing Secret, bad spec)."""

    reason: str
    message: str
    # A missing Secret or ConfigMap: a GitOps sync or a secrets operator may still create it.
    may_appear: bool = False


@dataclass(frozen=True)
class Observed:
    """Everything one planning pass reads, gathered before it starts (see controller.gather)."""

    name: str
    generation: int
    spec: Spec | None
    spec_hash: str
    status: MigrationStatus
    now: datetime
    retry_token: str | None = None
    # The plan hash named by the lockstep.dev/approve annotation, if any.
    approved_plan: str | None = None
    jobs: tuple[JobView, ...] = ()
    blocking_jobs: tuple[str, ...] = ()
    outcome: Outcome | None = None
    config_error: ConfigError | None = None
    lock_wait: LockWait | None = None
    rollouts: tuple[Rollout, ...] | None = None  # gathered for when: AfterRollout only
    # What the tool's version table says now, read every driftCheck.intervalSeconds.
    database_revision: DriftReading | None = None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record on the DatabaseMigration."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The status to write, at most one Job to create, Jobs to delete, Events, the next look."""

    status: MigrationStatus
    create_job: JobRequest | None = None
    delete_jobs: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
