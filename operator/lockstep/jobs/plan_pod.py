"""The plan pod: read-only, it shows the SQL a run would execute, classified.

It takes no lock: it changes nothing (the built-in runner re-checks the plan under the lock).
A tool in an image prints its SQL offline into a memory volume first (init container
`render`); `lockstep classify` then reads it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lockstep import constants, tools
from lockstep.contract import migration_args
from lockstep.jobs import containers
from lockstep.jobs.naming import JobRequest
from lockstep.model import Spec
from lockstep.tools import version_table

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
        "env": containers.database_env(spec),
        "securityContext": containers.container_security_context(),
        "volumeMounts": containers.volume_mounts(spec),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": containers.pod_security_context(built_in_runner=True),
        "containers": [container],
        "volumes": containers.volumes(spec),
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
    script = offline_sql_script(printed)
    init_containers = []
    if containers.converted_url_format(spec) == containers.URL_FORMAT:
        # The URL is composed from split keys: the tool's env.py reads it from the env file.
        script = f". {containers.ENV_FILE} && {{ {script}; }}"
        init_containers.append(containers.env_container(spec, containers.URL_FORMAT, runner_image))
        pod["volumes"].append(
            {"name": containers.ENV_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
        )
    render = {
        **containers.migrate_container(spec, request, runner_image),
        "name": RENDER_CONTAINER,
        "command": ["sh", "-c", script],
    }
    render.pop("args", None)
    # Not a migration: should the user's code connect while it renders (an env.py that connects
    # in offline mode too), it must not carry the migration tag, or a run's fence would end it
    # and a run would refuse to migrate beside it.
    render["env"] = [e for e in render["env"] if e.get("name") not in containers.TAG_ENV_NAMES]
    render["volumeMounts"] = [*render["volumeMounts"], mount]
    if init_containers:
        env_mount = {"name": containers.ENV_VOLUME, "mountPath": containers.ENV_DIR}
        render["volumeMounts"].append({**env_mount, "readOnly": True})
    pod["initContainers"] = [*init_containers, render]
    pod["containers"][0]["volumeMounts"].append({**mount, "readOnly": True})
    pod["volumes"].append(
        {"name": PLAN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    )
    # The image's user writes the file, Lockstep's user reads it: share the group.
    pod["securityContext"] = {
        **containers.pod_security_context(built_in_runner=False, shared_files=True),
    }
    pod["containers"][0]["securityContext"] = {
        **containers.container_security_context(),
        "runAsUser": containers.RUNNER_USER_ID,
        "runAsGroup": containers.RUNNER_USER_ID,
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
        return migration_args.ClassifyArgs(
            file=Path(OFFLINE_SQL_FILE),
            engine=spec.engine,
            salt=request.plan_salt,
            direction_file=Path(OFFLINE_DIRECTION_FILE),
            current=request.database_at,
            target=request.target,
        ).to_argv()
    return migration_args.PlanArgs(
        tool=spec.tool,
        source=Path(constants.SOURCE_MOUNT_PATH),
        target=request.target,
        salt=request.plan_salt,
        allow_downgrade=spec.downgrade_allowed,
        **version_table.run_options(spec),
    ).to_argv()
