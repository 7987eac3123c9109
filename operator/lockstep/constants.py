"""Names shared by every part of Lockstep: API coordinates, labels, annotations, reasons.

One module, so that a label or a condition reason is spelled exactly once.
"""

from typing import Final

GROUP: Final = "lockstep.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "DatabaseMigration"
PLURAL: Final = "databasemigrations"
API_VERSION: Final = f"{GROUP}/{VERSION}"

DEFAULT_RUNNER_IMAGE: Final = "ghcr.io/lockstep-dev/lockstep:0.1.0"
# The newest finished Job of each migration stays for `kubectl logs`; status has the rest
# (controller.retention; `lockstep operator --keep-finished-jobs`).
DEFAULT_KEEP_FINISHED_JOBS: Final = 1
# Full passes per second at start-up: 10,000 migrations in about 3.5 minutes, 100 GETs/s
# (controller.pacing; `lockstep operator --initial-pass-rate`).
DEFAULT_INITIAL_PASS_RATE: Final = 50.0

# Labels on everything Lockstep creates.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "lockstep"
# The source of Lockstep's Events (`kubectl describe` shows it in the "From" column).
REPORTING_COMPONENT: Final = "lockstep"

LABEL_MIGRATION: Final = f"{GROUP}/migration"
LABEL_DATABASE: Final = f"{GROUP}/database"
LABEL_SPEC_HASH: Final = f"{GROUP}/spec-hash"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
LABEL_DIRECTION: Final = f"{GROUP}/direction"
# "migrate" (applies the change) or "plan" (renders and classifies it, read-only).
LABEL_PHASE: Final = f"{GROUP}/phase"
PHASE_MIGRATE: Final = "migrate"
PHASE_PLAN: Final = "plan"

# The labels Lockstep sets on its Jobs (and their pods) itself: a shard's selector cannot be
# carried to a Job on these keys (controller.scope.job_scope).
JOB_LABEL_KEYS: Final = frozenset(
    {
        LABEL_NAME,
        LABEL_INSTANCE,
        LABEL_COMPONENT,
        LABEL_MANAGED_BY,
        LABEL_PART_OF,
        LABEL_MIGRATION,
        LABEL_DATABASE,
        LABEL_SPEC_HASH,
        LABEL_ATTEMPT,
        LABEL_DIRECTION,
        LABEL_PHASE,
    }
)

ANNOTATION_TARGET: Final = f"{GROUP}/target"
ANNOTATION_RETRY: Final = f"{GROUP}/retry"
ANNOTATION_APPROVE: Final = f"{GROUP}/approve"

MIGRATE_CONTAINER: Final = "migrate"
PLAN_CONTAINER: Final = "plan"
SHADOW_DATABASE_URL_ENV: Final = "SHADOW_DATABASE_URL"
LOCK_CONTAINER: Final = "lockstep-lock"
# The init container that claims an external tool's version table (after the lock is held).
CLAIM_CONTAINER: Final = "lockstep-claim"
# `lockstep lock` exits with this when it gave up waiting for the lock (the operator reads it).
EXIT_LOCK_TIMEOUT: Final = 3
SOURCE_MOUNT_PATH: Final = "/migrations"
DATABASE_URL_ENV: Final = "DATABASE_URL"
# The PostgreSQL application_name of every migration connection (the runner's, and external
# tools' through PGAPPNAME or their URL): the fence finds an earlier run's backends by it
# (lockstep.pod.fence, docs/adr/0009-the-fence.md).
MIGRATION_APPLICATION_NAME: Final = "lockstep-migration"
PGAPPNAME_ENV: Final = "PGAPPNAME"
# MySQL/MariaDB have no such tag: a migration connection holds the run's mark, a named lock
# (lockstep.pod.fence.run_lock_name). This statement takes it on the connection that runs it,
# naming it from DATABASE() so that no database name is ever spliced into SQL; Flyway gets it as
# FLYWAY_INIT_SQL, other tools' connection hooks read it from RUN_MARK_SQL_ENV.
RUN_MARK_SQL: Final = (
    "SELECT GET_LOCK(IF(CHAR_LENGTH(DATABASE()) <= 51, CONCAT('lockstep-run:', DATABASE()), "
    "CONCAT('lockstep-run:', LEFT(SHA2(DATABASE(), 256), 40))), 0)"
)
RUN_MARK_SQL_ENV: Final = "LOCKSTEP_RUN_MARK_SQL"

HISTORY_LIMIT: Final = 10
LOG_TAIL_BYTES: Final = 4096

# Condition types (kstatus: Ready always present; Reconciling and Stalled only while true).
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
DRIFTED: Final = "Drifted"


class Reason:
    """Condition and Event reasons. CamelCase, as Kubernetes conventions ask."""

    SUCCEEDED: Final = "Succeeded"
    UP_TO_DATE: Final = "UpToDate"
    JOB_CREATED: Final = "JobCreated"
    JOB_RUNNING: Final = "JobRunning"
    FAILED: Final = "Failed"
    RETRY_SCHEDULED: Final = "RetryScheduled"
    RETRIES_EXHAUSTED: Final = "RetriesExhausted"
    STALLED: Final = "Stalled"
    SUSPENDED: Final = "Suspended"
    WAITING_FOR_JOB: Final = "WaitingForJob"
    WAITING_FOR_LOCK: Final = "WaitingForLock"
    WAITING_FOR_ROLLOUT: Final = "WaitingForRollout"
    WAITING_FOR_PREVIOUS_JOB: Final = "WaitingForPreviousJob"
    INVALID_SPEC: Final = "InvalidSpec"
    SECRET_NOT_FOUND: Final = "SecretNotFound"  # noqa: S105 - a reason, not a password
    CONFIG_MAP_NOT_FOUND: Final = "ConfigMapNotFound"
    RETRY_REQUESTED: Final = "RetryRequested"
    DOWNGRADE_FORBIDDEN: Final = "DowngradeForbidden"
    TARGET_BEHIND: Final = "TargetBehind"
    DRIFT_DETECTED: Final = "DriftDetected"
    DRIFT_RESOLVED: Final = "DriftResolved"
    TARGET_NOT_REACHED: Final = "TargetNotReached"
    PLANNING: Final = "Planning"
    PLANNED: Final = "Planned"
    AWAITING_APPROVAL: Final = "AwaitingApproval"
    APPROVED: Final = "Approved"
    APPROVAL_IGNORED: Final = "ApprovalIgnored"
    PLAN_CHANGED: Final = "PlanChanged"
    REHEARSAL_FAILED: Final = "RehearsalFailed"
    REHEARSAL_UNSUPPORTED: Final = "RehearsalUnsupported"


# Runner failures that another attempt cannot fix: a person has to act first.
PERMANENT_FAILURE_REASONS: Final = frozenset(
    {
        "ChecksumMismatch",
        "VersionTableInUse",
        "BaselineRefused",
        "DowngradeForbidden",
        "PartiallyApplied",
        "InvalidSource",
        "UnknownTarget",
        "InvalidTarget",
        "TargetNotReached",
        "TargetUnsupported",
        "DowngradeUnsupported",
        "RehearsalFailed",
    }
)

# spec.timeouts.statementLockTimeout: the CRD's pattern (lockstep.model names it too), here so
# that `lockstep run` reads it without importing the model (issue 21).
STATEMENT_LOCK_TIMEOUT_PATTERN: Final = r"^[1-9][0-9]*(ms|s|min)$"
