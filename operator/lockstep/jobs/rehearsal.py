"""The shadow rehearsal of a tool in an image: init containers that run before the migration.

`rehearse-1-reset` empties the shadow database (Lockstep's image); the next ones run the tool in
the user's image against it: up, down to where the real database is, up again. (The built-in
runner rehearses inside `lockstep run` instead, see :mod:`lockstep.pod.rehearsal`.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lockstep import constants, tools
from lockstep.contract import migration_args
from lockstep.errors import LockstepError
from lockstep.jobs import containers
from lockstep.jobs.naming import JobRequest
from lockstep.model import Spec

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
        "command": list(migration_args.ShadowResetArgs().to_argv()),
        "env": [*containers.database_env(spec), *containers.shadow_url_env(spec, always=True)],
        "volumeMounts": containers.tls_mounts(spec),
        "securityContext": {
            **containers.container_security_context(),
            "runAsUser": containers.RUNNER_USER_ID,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    steps = [
        {
            **containers.migrate_container(spec, request, runner_image),
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
    up = containers.migrate_command(spec, replace(request, downgrade=False))
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
