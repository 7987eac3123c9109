"""The containers a migration pod is made of, and what they share.

The migrate container (Lockstep's runner or the tool's own image), the lock sidecar that holds
the database's migration lock for the whole pod, the `lockstep-env` init container that converts
$DATABASE_URL for tools that cannot take a URL (or composes it from split Secret keys, ADR 0010),
and the security contexts, environment and volumes they have in common. The `lockstep` command
lines come from :mod:`lockstep.contract`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lockstep import constants, db_connection, tools
from lockstep.contract import helper_args, migration_args
from lockstep.errors import LockstepError
from lockstep.jobs.naming import JobRequest
from lockstep.model import Spec
from lockstep.tools import version_table

SOURCE_VOLUME = "migrations"
TMP_VOLUME = "tmp"
ENV_VOLUME = "lockstep-env"
ENV_DIR = tools.base.ENV_DIR
ENV_FILE = tools.base.ENV_FILE
ENV_CONTAINER = "lockstep-env"
CLAIM_CONTAINER = constants.CLAIM_CONTAINER
LOCK_CONTAINER = constants.LOCK_CONTAINER
LOCK_VOLUME = "lockstep-run"
LOCK_DIR = "/run/lockstep"
LOCK_READY_FILE = f"{LOCK_DIR}/locked"
# Startup probe cadence of the lock sidecar; its failure threshold covers the whole lock wait.
LOCK_PROBE_PERIOD_SECONDS = 1
LOCK_PROBE_SLACK_SECONDS = 30
RUNNER_USER_ID = 65532
# `lockstep dburl --format url`: DATABASE_URL itself, for a tool in its image when the pod
# composes the URL (split keys, TLS parameters; ADR 0010).
URL_FORMAT = "url"
# Set by Lockstep for the fence: a user's own value is replaced (migration_tag_env).
TAG_ENV_NAMES = frozenset({constants.PGAPPNAME_ENV, constants.RUN_MARK_SQL_ENV})


# Sources the env file `lockstep dburl --format url` wrote, then runs the tool's command (the
# arguments after the script): a tool in its own image gets $DATABASE_URL composed from split
# keys without any shell quoting of the command (ADR 0010).
_SOURCE_URL_AND_EXEC = f'. {ENV_FILE} && exec "$@"'


def migrate_container(spec: Spec, request: JobRequest, runner_image: str) -> dict[str, Any]:
    """The container that migrates: the spec's container fields describe it (env, resources,
    volumeMounts, securityContext over the restricted default)."""
    user_image = request.image or spec.image
    command = list(migrate_command(spec, request))
    if converted_url_format(spec) == URL_FORMAT:
        command = ["sh", "-c", _SOURCE_URL_AND_EXEC, "sh", *command]
    # A tool in its image whose URL the pod composes from split keys reads it from the env
    # file: its container gets no Secret reference at all.
    composed = not spec.uses_built_in_runner and converted_url_format(spec) is not None
    container: dict[str, Any] = {
        "name": constants.MIGRATE_CONTAINER,
        "image": runner_image if spec.uses_built_in_runner else user_image,
        "command": command,
        "env": [
            *([] if composed and spec.url_secret is None else database_env(spec)),
            *shadow_url_env(spec),
            *(dict(e) for e in spec.env if e.get("name") not in TAG_ENV_NAMES),
            *migration_tag_env(spec),
            *version_table.tool_env(spec.tool, spec.version_table),
        ],
        "securityContext": {**container_security_context(), **spec.security_context},
        "volumeMounts": [*volume_mounts(spec), *(dict(m) for m in spec.volume_mounts)],
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


def migration_tag_env(spec: Spec) -> list[dict[str, Any]]:
    """``PGAPPNAME`` for a tool's own image: libpq, psycopg and node-postgres tag their
    connections with it, so a later run's fence can find a backend this run left behind.

    The built-in runner tags its migration connection itself (and only that one); a user's
    own ``PGAPPNAME`` is replaced, since the fence relies on the tag.
    """
    if spec.uses_built_in_runner:
        return []
    if spec.engine in ("mysql", "mariadb"):
        # MySQL/MariaDB drivers send no tag: a tool's connection hook runs this statement
        # (docs/guarantees.md shows it for Sequelize, Knex and Django; Flyway gets it by itself).
        return [{"name": constants.RUN_MARK_SQL_ENV, "value": constants.RUN_MARK_SQL}]
    return [{"name": constants.PGAPPNAME_ENV, "value": constants.MIGRATION_APPLICATION_NAME}]


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
    shadow = spec.shadow_secret is not None
    return migration_args.RunArgs(
        tool=spec.tool,
        source=Path(constants.SOURCE_MOUNT_PATH),
        target=request.target,
        lock_wait_seconds=spec.timeouts.lock_wait_seconds,
        statement_lock_timeout=spec.timeouts.statement_lock_timeout,
        # The pod's lock sidecar holds the lock already; taking it again would wait on itself.
        no_lock=True,
        allow_downgrade=spec.downgrade_allowed,
        plan_salt=request.plan_salt or None,
        expect_plan=request.expect_plan or None,
        shadow_url_env=constants.SHADOW_DATABASE_URL_ENV if shadow else None,
        **version_table.run_options(spec),
    ).to_argv()


def composes_url(spec: Spec) -> bool:
    """Whether the pod builds the URL itself: split keys, or TLS parameters to add (ADR 0010)."""
    return spec.connection is not None or spec.tls is not None


def converted_url_format(spec: Spec) -> str | None:
    """The format `lockstep dburl` writes for a tool in an image, if it needs one: the tool's
    own (Flyway's JDBC variables), or `url` (DATABASE_URL) when the pod composes the URL."""
    if spec.uses_built_in_runner:
        return None
    own = None if spec.command else tools.get_adapter(spec.tool).url_format
    return own or (URL_FORMAT if composes_url(spec) else None)


def env_container(spec: Spec, url_format: str, runner_image: str) -> dict[str, Any]:
    """Converts DATABASE_URL into the tool's own variables, in a file on a memory volume.

    The password stays out of the Job spec: it goes Secret → env → tmpfs file → the tool.
    """
    return {
        "name": ENV_CONTAINER,
        "image": runner_image,
        "command": list(helper_args.DburlArgs(format=url_format, out=Path(ENV_FILE)).to_argv()),
        "env": database_env(spec),
        "securityContext": {**container_security_context(), "runAsUser": RUNNER_USER_ID},
        "volumeMounts": [{"name": ENV_VOLUME, "mountPath": ENV_DIR}, *tls_mounts(spec)],
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
    ready = Path(LOCK_READY_FILE)
    return {
        "name": LOCK_CONTAINER,
        "image": runner_image,
        "restartPolicy": "Always",
        "command": list(helper_args.LockArgs(wait_seconds=wait, ready_file=ready).to_argv()),
        "env": database_env(spec),
        "startupProbe": {
            "exec": {"command": list(helper_args.LockArgs(probe=True, ready_file=ready).to_argv())},
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
        "volumeMounts": [{"name": LOCK_VOLUME, "mountPath": LOCK_DIR}, *tls_mounts(spec)],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def claim_container(spec: Spec, runner_image: str) -> dict[str, Any] | None:
    """`lockstep claim` for a tool in the user's image: one DatabaseMigration per version table.

    Runs after the lock sidecar holds the lock and before the tool starts; a table another
    DatabaseMigration claimed fails the pod here, with VersionTableInUse in the termination
    message (docs/adr/0012-one-history-per-resource.md). The built-in runner claims by itself.
    """
    if spec.uses_built_in_runner or not spec.owner:
        return None
    table = version_table.resolve(spec.tool, spec.version_table, spec.owner)
    claim = helper_args.ClaimArgs(
        tool=spec.tool,
        version_table=table.name,
        owner=spec.owner,
        version_table_schema=table.schema,
    )
    return {
        "name": CLAIM_CONTAINER,
        "image": runner_image,
        "command": list(claim.to_argv()),
        "env": database_env(spec),
        "volumeMounts": tls_mounts(spec),
        "securityContext": {
            **container_security_context(),
            "runAsUser": RUNNER_USER_ID,
            "runAsGroup": RUNNER_USER_ID,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def shadow_url_env(spec: Spec, always: bool = False) -> list[dict[str, Any]]:
    """The shadow database's URL for the rehearsal, from its Secret like the real one."""
    if spec.shadow_secret is None or not (spec.uses_built_in_runner or always):
        return []
    ref = {"name": spec.shadow_secret.name, "key": spec.shadow_secret.key}
    return [{"name": constants.SHADOW_DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": ref}}]


def database_env(spec: Spec) -> list[dict[str, Any]]:
    """The database for Lockstep's commands: $DATABASE_URL from its Secret, or the split parts
    (`LOCKSTEP_DB_*`) they compose it from, plus driver parameters (TLS files, spec's own).

    The URL and the password reach the pod only through Secrets, never the Job spec.
    """
    env: list[dict[str, Any]] = []
    if spec.url_secret is not None:
        ref = {"name": spec.url_secret.name, "key": spec.url_secret.key}
        env.append({"name": constants.DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": ref}})
    if spec.connection is not None:
        env.append({"name": db_connection.ENGINE_ENV, "value": spec.engine})
        names = dict(db_connection.PART_ENVS)
        for part_name, part in spec.connection.parts():
            if part.secret is not None:
                ref = {"name": part.secret.name, "key": part.secret.key}
                env.append({"name": names[part_name], "valueFrom": {"secretKeyRef": ref}})
            else:
                env.append({"name": names[part_name], "value": part.value})
    params = db_connection.parameters(spec.connection, spec.engine, spec.tls)
    if params:
        env.append(
            {"name": db_connection.PARAMS_ENV, "value": db_connection.encode_parameters(params)}
        )
    return env


def tls_mounts(spec: Spec) -> list[dict[str, Any]]:
    """The TLS Secret's files, read-only, in every container that connects."""
    if spec.tls is None:
        return []
    return [
        {"name": db_connection.TLS_VOLUME, "mountPath": db_connection.TLS_DIR, "readOnly": True}
    ]


def tls_volume(spec: Spec) -> list[dict[str, Any]]:
    """Mode 0440, group fsGroup: libpq takes a root-owned key only without access for others."""
    if spec.tls is None:
        return []
    items = [{"key": key, "path": name} for key, name in spec.tls.files()]
    secret = {"secretName": spec.tls.secret_name, "items": items, "defaultMode": 0o440}
    return [{"name": db_connection.TLS_VOLUME, "secret": secret}]


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
    return [*result, *tls_volume(spec)]


def volume_mounts(spec: Spec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]  # noqa: S108
    if spec.source_config_map:
        mounts.append(
            {"name": SOURCE_VOLUME, "mountPath": constants.SOURCE_MOUNT_PATH, "readOnly": True}
        )
    return [*mounts, *tls_mounts(spec)]
