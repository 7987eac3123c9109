"""Pure builders for migration Jobs.

The Job name is derived from the DatabaseMigration name, the spec hash and the attempt number, so
creating the same run twice is impossible: the API server answers the second create with 409.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lockstep import constants, tools
from lockstep.errors import LockstepError
from lockstep.model import Spec

HASH_LENGTH = 8
SOURCE_VOLUME = "migrations"
TMP_VOLUME = "tmp"
ENV_VOLUME = "lockstep-env"
ENV_DIR = tools.base.ENV_DIR
ENV_FILE = tools.base.ENV_FILE
ENV_CONTAINER = "lockstep-env"
LOCK_CONTAINER = constants.LOCK_CONTAINER
LOCK_VOLUME = "lockstep-run"
LOCK_DIR = "/run/lockstep"
LOCK_READY_FILE = f"{LOCK_DIR}/locked"
# Startup probe cadence of the lock sidecar; its failure threshold covers the whole lock wait.
LOCK_PROBE_PERIOD_SECONDS = 1
LOCK_PROBE_SLACK_SECONDS = 30
RUNNER_USER_ID = 65532


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


PLAN_SALT_LENGTH = 16


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


def job_labels(owner: Owner, spec_hash: str, database_key: str) -> dict[str, str]:
    return {
        constants.LABEL_NAME: "lockstep",
        constants.LABEL_INSTANCE: owner.name,
        constants.LABEL_COMPONENT: "migration",
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_PART_OF: "lockstep",
        constants.LABEL_MIGRATION: owner.name,
        constants.LABEL_DATABASE: database_key,
        constants.LABEL_SPEC_HASH: spec_hash[:HASH_LENGTH],
    }


def build_job(
    owner: Owner,
    spec: Spec,
    spec_hash: str,
    request: JobRequest,
    database_key: str,
    runner_image: str,
) -> dict[str, Any]:
    labels = job_labels(owner, spec_hash, database_key)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name, spec_hash, request.attempt, request.phase),
            "namespace": owner.namespace,
            "labels": {
                **labels,
                constants.LABEL_ATTEMPT: str(request.attempt),
                constants.LABEL_DIRECTION: "down" if request.downgrade else "up",
                constants.LABEL_PHASE: request.phase,
            },
            "annotations": {constants.ANNOTATION_TARGET: request.target},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            # Lockstep owns retries (with backoff and a record of each attempt), not the Job.
            "backoffLimit": 0,
            "parallelism": 1,
            "completions": 1,
            "activeDeadlineSeconds": spec.timeouts.job_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": (
                    build_plan_pod_spec(spec, request, runner_image)
                    if request.is_plan
                    else build_pod_spec(spec, request, runner_image)
                ),
            },
        },
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


def build_pod_spec(spec: Spec, request: JobRequest, runner_image: str) -> dict[str, Any]:
    url_format = converted_url_format(spec)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": pod_security_context(
            spec.uses_built_in_runner, shared_files=url_format is not None
        ),
        "containers": [migrate_container(spec, request, runner_image)],
        "volumes": volumes(spec),
    }
    init_containers = rehearsal_containers(spec, request, runner_image)
    if url_format is not None:
        init_containers.append(env_container(spec, url_format, runner_image))
        pod["volumes"].append(
            {"name": ENV_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
        )
        pod["containers"][0]["volumeMounts"].append(
            {"name": ENV_VOLUME, "mountPath": ENV_DIR, "readOnly": True}
        )
    # Last init container: the migration starts only once the lock sidecar holds the lock.
    init_containers.append(lock_sidecar(spec, runner_image))
    pod["volumes"].append(
        {"name": LOCK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    )
    pod["initContainers"] = init_containers
    optional: Mapping[str, Any] = {
        "serviceAccountName": spec.service_account_name,
        "nodeSelector": dict(spec.node_selector) or None,
        "tolerations": [dict(t) for t in spec.tolerations] or None,
        "imagePullSecrets": [{"name": n} for n in spec.image_pull_secrets] or None,
    }
    pod.update({k: v for k, v in optional.items() if v is not None})
    # Migration pods need no API access unless the user gives them an account on purpose.
    pod["automountServiceAccountToken"] = spec.service_account_name is not None
    return pod


PLAN_VOLUME = "lockstep-plan"
PLAN_DIR = "/lockstep-plan"
OFFLINE_SQL_FILE = f"{PLAN_DIR}/offline.sql"
OFFLINE_DIRECTION_FILE = f"{PLAN_DIR}/direction"
RENDER_CONTAINER = "render"


def can_render_plan(spec: Spec) -> bool:
    """Whether a plan Job can show this run's SQL: the built-in runner, or a tool in an image
    that prints SQL offline (Alembic's --sql), unless spec.command replaces the tool's own."""
    if spec.uses_built_in_runner:
        return True
    printable = tools.get_adapter(spec.tool).offline_sql_commands("base", "head", False)
    return printable is not None and not spec.command


def build_plan_pod_spec(spec: Spec, request: JobRequest, runner_image: str) -> dict[str, Any]:
    """A read-only pod that renders and classifies the SQL a run would execute.

    It takes no lock: it changes nothing (the built-in runner re-checks the plan under the lock).
    A tool in an image prints its SQL offline into a memory volume first (init container
    `render`); `lockstep classify` then reads it.
    """
    container: dict[str, Any] = {
        "name": constants.PLAN_CONTAINER,
        "image": runner_image,
        "command": list(plan_command(spec, request)),
        "env": [database_url_env(spec)],
        "securityContext": container_security_context(),
        "volumeMounts": volume_mounts(spec),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(built_in_runner=True),
        "containers": [container],
        "volumes": volumes(spec),
    }
    if not spec.uses_built_in_runner:
        _render_offline_sql_first(pod, spec, request, runner_image)
    optional: Mapping[str, Any] = {
        "nodeSelector": dict(spec.node_selector) or None,
        "tolerations": [dict(t) for t in spec.tolerations] or None,
    }
    pod.update({k: v for k, v in optional.items() if v is not None})
    return pod


def _render_offline_sql_first(
    pod: dict[str, Any], spec: Spec, request: JobRequest, runner_image: str
) -> None:
    adapter = tools.get_adapter(spec.tool)
    printed = adapter.offline_sql_commands(request.database_at, request.target, request.downgrade)
    assert printed is not None, "planning asks can_render_plan first"
    mount = {"name": PLAN_VOLUME, "mountPath": PLAN_DIR}
    render = {
        **migrate_container(spec, request, runner_image),
        "name": RENDER_CONTAINER,
        "command": ["sh", "-c", offline_sql_script(printed)],
    }
    render.pop("args", None)
    render["volumeMounts"] = [*render["volumeMounts"], mount]
    pod["initContainers"] = [render]
    pod["containers"][0]["volumeMounts"].append({**mount, "readOnly": True})
    pod["volumes"].append(
        {"name": PLAN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    )
    # The image's user writes the file, Lockstep's user reads it: share the group.
    pod["securityContext"] = {
        **pod_security_context(built_in_runner=False, shared_files=True),
    }
    pod["containers"][0]["securityContext"] = {
        **container_security_context(),
        "runAsUser": RUNNER_USER_ID,
        "runAsGroup": RUNNER_USER_ID,
    }


def offline_sql_script(attempts: list[tools.base.OfflineSql]) -> str:
    """Try each way to print the SQL until one works; keep the SQL and its direction.

    The tool logs to stderr (the container's log); only its SQL (stdout) goes into the file.
    """
    tries = []
    for attempt in attempts:
        steps = [f"{shlex.join(attempt.command)} > {OFFLINE_SQL_FILE}"]
        if attempt.proof is not None:
            steps.append(f"grep -q -F -e {shlex.quote(attempt.proof)} {OFFLINE_SQL_FILE}")
        steps.append(f"echo {shlex.quote(attempt.direction)} > {OFFLINE_DIRECTION_FILE}")
        tries.append("{ " + " && ".join(steps) + "; }")
    return " || ".join(tries)


def plan_command(spec: Spec, request: JobRequest) -> tuple[str, ...]:
    if not spec.uses_built_in_runner:
        command = [
            "lockstep",
            "classify",
            OFFLINE_SQL_FILE,
            "--engine",
            spec.engine,
            "--salt",
            request.plan_salt,
            "--direction-file",
            OFFLINE_DIRECTION_FILE,
            "--from",
            request.database_at,
            "--to",
            request.target,
        ]
        return tuple(command)
    command = [
        "lockstep",
        "plan",
        "--tool",
        spec.tool,
        "--source",
        constants.SOURCE_MOUNT_PATH,
        "--target",
        request.target,
        "--salt",
        request.plan_salt,
    ]
    if spec.downgrade_allowed:
        command.append("--allow-downgrade")
    return tuple(command)


REHEARSAL_PREFIX = "rehearse-"


def rehearsal_containers(
    spec: Spec, request: JobRequest, runner_image: str
) -> list[dict[str, Any]]:
    """A shadow rehearsal for tools in an image: init containers that run before anything else.

    `rehearse-1-reset` empties the shadow database (Lockstep's image); the next ones run the
    tool in the user's image against it: up, down to where the real database is, up again. Any
    failing step fails the pod before the lock sidecar starts: the real database is untouched.
    (The built-in runner rehearses inside `lockstep run` instead.)
    """
    if spec.shadow_secret is None or spec.uses_built_in_runner:
        return []
    reset = {
        "name": f"{REHEARSAL_PREFIX}1-reset",
        "image": runner_image,
        "command": ["lockstep", "shadow-reset"],
        "env": [database_url_env(spec), *shadow_url_env(spec, always=True)],
        "securityContext": {**container_security_context(), "runAsUser": RUNNER_USER_ID},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    steps = [
        {
            **migrate_container(spec, request, runner_image),
            "name": f"{REHEARSAL_PREFIX}{index}-{label}",
            "command": list(command),
            "env": [_shadow_as_database_url(spec), *(dict(e) for e in spec.env)],
        }
        for index, (label, command) in enumerate(rehearsal_steps(spec, request), start=2)
    ]
    return [reset, *steps]


def rehearsal_steps(spec: Spec, request: JobRequest) -> list[tuple[str, tuple[str, ...]]]:
    """Up, down, up again (a rollback: up to where the database is, down, up, down)."""
    adapter = tools.get_adapter(spec.tool)
    if request.downgrade:
        up = tuple(adapter.upgrade_command(request.database_at))
        down = tuple(adapter.downgrade_command(request.target))
        return [("upgrade", up), ("downgrade", down), ("upgrade", up), ("downgrade", down)]
    up = migrate_command(spec, replace(request, downgrade=False))
    down = tuple(adapter.downgrade_command(request.database_at))
    return [("upgrade", up), ("downgrade", down), ("upgrade", up)]


def rehearsal_problem(spec: Spec, request: JobRequest) -> str | None:
    """Why this tool's run cannot be rehearsed on a shadow database, before any Job."""
    if spec.shadow_secret is None or spec.uses_built_in_runner:
        return None
    if tools.get_adapter(spec.tool).url_format is not None:
        return (
            f"tool {spec.tool} gets its connection from a converted URL that Lockstep writes for "
            "the real database only, and cannot go down: nothing to rehearse beyond the upgrade"
        )
    try:
        rehearsal_steps(spec, request)
    except LockstepError as problem:
        return f"the rehearsal goes back down to {request.database_at}, and {problem}"
    return None


def _shadow_as_database_url(spec: Spec) -> dict[str, Any]:
    assert spec.shadow_secret is not None
    ref = {"name": spec.shadow_secret.name, "key": spec.shadow_secret.key}
    return {"name": constants.DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": ref}}


def converted_url_format(spec: Spec) -> str | None:
    """The URL format the tool needs, when it cannot take DATABASE_URL as it is (Flyway)."""
    if spec.uses_built_in_runner or spec.command:
        return None
    return tools.get_adapter(spec.tool).url_format


def env_container(spec: Spec, url_format: str, runner_image: str) -> dict[str, Any]:
    """Converts DATABASE_URL into the tool's own variables, in a file on a memory volume.

    The password stays out of the Job spec: it goes Secret → env → tmpfs file → the tool.
    """
    return {
        "name": ENV_CONTAINER,
        "image": runner_image,
        "command": ["lockstep", "dburl", "--format", url_format, "--out", ENV_FILE],
        "env": [database_url_env(spec)],
        "securityContext": {**container_security_context(), "runAsUser": RUNNER_USER_ID},
        "volumeMounts": [{"name": ENV_VOLUME, "mountPath": ENV_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def lock_sidecar(spec: Spec, runner_image: str) -> dict[str, Any]:
    """A native sidecar (init container, restartPolicy Always) holding the database lock.

    Kubernetes starts it before the migrate container and waits for its startup probe, which
    passes only once the lock is held; it is stopped after the migration ends, and the database
    drops the lock with its connection if the pod dies. Hand-made Jobs and other operators that
    use `lockstep lock` or the runner wait on the same lock.
    """
    wait = spec.timeouts.lock_wait_seconds
    return {
        "name": LOCK_CONTAINER,
        "image": runner_image,
        "restartPolicy": "Always",
        "command": [
            "lockstep",
            "lock",
            "--wait-seconds",
            str(wait),
            "--ready-file",
            LOCK_READY_FILE,
        ],
        "env": [database_url_env(spec)],
        "startupProbe": {
            "exec": {"command": ["lockstep", "lock", "--probe", "--ready-file", LOCK_READY_FILE]},
            "periodSeconds": LOCK_PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": wait // LOCK_PROBE_PERIOD_SECONDS + LOCK_PROBE_SLACK_SECONDS,
        },
        "securityContext": {
            **container_security_context(),
            "runAsUser": RUNNER_USER_ID,
            "runAsGroup": RUNNER_USER_ID,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": LOCK_VOLUME, "mountPath": LOCK_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def migrate_container(spec: Spec, request: JobRequest, runner_image: str) -> dict[str, Any]:
    user_image = request.image or spec.image
    container: dict[str, Any] = {
        "name": constants.MIGRATE_CONTAINER,
        "image": runner_image if spec.uses_built_in_runner else user_image,
        "command": list(migrate_command(spec, request)),
        "env": [database_url_env(spec), *shadow_url_env(spec), *(dict(e) for e in spec.env)],
        "securityContext": container_security_context(),
        "volumeMounts": volume_mounts(spec),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env_from:
        container["envFrom"] = [dict(e) for e in spec.env_from]
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    if spec.resources:
        container["resources"] = dict(spec.resources)
    return container


def command_problem(spec: Spec, request: JobRequest) -> LockstepError | None:
    """Why the tool cannot run this request (no downgrade, unsupported target), before any Job."""
    try:
        migrate_command(spec, request)
    except LockstepError as problem:
        return problem
    return None


def migrate_command(spec: Spec, request: JobRequest) -> tuple[str, ...]:
    if spec.command and not request.downgrade:
        return spec.command
    if spec.uses_built_in_runner:
        return runner_command(spec, request)
    adapter = tools.get_adapter(spec.tool)
    if request.downgrade:
        return tuple(adapter.downgrade_command(request.target))
    return tuple(adapter.upgrade_command(request.target))


def runner_command(spec: Spec, request: JobRequest) -> tuple[str, ...]:
    command = [
        "lockstep",
        "run",
        "--tool",
        spec.tool,
        "--source",
        constants.SOURCE_MOUNT_PATH,
        "--target",
        request.target,
        "--lock-wait-seconds",
        str(spec.timeouts.lock_wait_seconds),
        "--statement-lock-timeout",
        spec.timeouts.statement_lock_timeout,
        # The pod's lock sidecar holds the lock already; taking it again would wait on itself.
        "--no-lock",
    ]
    if spec.downgrade_allowed:
        command.append("--allow-downgrade")
    if request.plan_salt:
        command += ["--plan-salt", request.plan_salt]
    if request.expect_plan:
        command += ["--expect-plan", request.expect_plan]
    if spec.shadow_secret is not None:
        command += ["--shadow-url-env", constants.SHADOW_DATABASE_URL_ENV]
    return tuple(command)


def shadow_url_env(spec: Spec, always: bool = False) -> list[dict[str, Any]]:
    """The shadow database's URL for the rehearsal, from its Secret like the real one."""
    if spec.shadow_secret is None or not (spec.uses_built_in_runner or always):
        return []
    ref = {"name": spec.shadow_secret.name, "key": spec.shadow_secret.key}
    return [{"name": constants.SHADOW_DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": ref}}]


def database_url_env(spec: Spec) -> dict[str, Any]:
    # The URL holds the password: it reaches the pod only through the Secret, never the Job spec.
    return {
        "name": constants.DATABASE_URL_ENV,
        "valueFrom": {"secretKeyRef": {"name": spec.url_secret.name, "key": spec.url_secret.key}},
    }


def pod_security_context(built_in_runner: bool, shared_files: bool = False) -> dict[str, Any]:
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if built_in_runner:
        # Lockstep's image runs as this numeric user; user images keep their own USER.
        context.update(
            {"runAsUser": RUNNER_USER_ID, "runAsGroup": RUNNER_USER_ID, "fsGroup": RUNNER_USER_ID}
        )
    elif shared_files:
        # The env file is written by Lockstep's user; the group lets the image's user read it.
        context["fsGroup"] = RUNNER_USER_ID
    return context


def container_security_context() -> dict[str, Any]:
    """Pod Security Standard "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volumes(spec: Spec) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    if spec.source_config_map:
        result.append({"name": SOURCE_VOLUME, "configMap": {"name": spec.source_config_map}})
    return result


def volume_mounts(spec: Spec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]  # noqa: S108
    if spec.source_config_map:
        mounts.append(
            {"name": SOURCE_VOLUME, "mountPath": constants.SOURCE_MOUNT_PATH, "readOnly": True}
        )
    return mounts
