"""The Job of one run, and the pod that migrates.

A Job runs one attempt and is never retried by Kubernetes (Lockstep owns retries). Its pod
migrates (:func:`build_pod_spec`) or, for the plan phase, only shows what would run
(:func:`lockstep.jobs.plan_pod.build_plan_pod_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockstep import constants
from lockstep.jobs import containers, customize, naming, plan_pod, rehearsal
from lockstep.jobs.naming import JobRequest, Owner
from lockstep.model import Spec


def build_job(
    owner: Owner,
    spec: Spec,
    spec_hash: str,
    request: JobRequest,
    database_key: str,
    runner_image: str,
    carried_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Job, and its pod template, labelled with Lockstep's labels over `carried_labels`
    (which the pod template's labels from the spec cannot override: `customize.pod_metadata`)."""
    labels = naming.job_labels(owner, spec_hash, database_key, carried_labels)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(owner.name, spec_hash, request.attempt, request.phase),
            "namespace": owner.namespace,
            "labels": {
                **labels,
                constants.LABEL_ATTEMPT: str(request.attempt),
                constants.LABEL_DIRECTION: "down" if request.downgrade else "up",
                constants.LABEL_PHASE: request.phase,
            },
            "annotations": {constants.ANNOTATION_TARGET: request.target},
            "ownerReferences": [naming.owner_reference(owner)],
        },
        "spec": {
            # Lockstep owns retries (with backoff and a record of each attempt), not the Job.
            "backoffLimit": 0,
            "parallelism": 1,
            "completions": 1,
            "activeDeadlineSeconds": spec.timeouts.job_seconds,
            "template": {
                "metadata": customize.pod_metadata(spec, labels),
                "spec": customize.apply_pod_template(
                    plan_pod.build_plan_pod_spec(spec, request, runner_image)
                    if request.is_plan
                    else build_pod_spec(spec, request, runner_image),
                    spec,
                ),
            },
        },
    }


def build_pod_spec(spec: Spec, request: JobRequest, runner_image: str) -> dict[str, Any]:
    url_format = containers.converted_url_format(spec)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": containers.pod_security_context(
            spec.uses_built_in_runner, shared_files=url_format is not None
        ),
        "containers": [containers.migrate_container(spec, request, runner_image)],
        "volumes": containers.volumes(spec),
    }
    init_containers = rehearsal.rehearsal_containers(spec, request, runner_image)
    if url_format is not None:
        init_containers.append(containers.env_container(spec, url_format, runner_image))
        pod["volumes"].append(
            {"name": containers.ENV_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
        )
        pod["containers"][0]["volumeMounts"].append(
            {"name": containers.ENV_VOLUME, "mountPath": containers.ENV_DIR, "readOnly": True}
        )
    # The migration starts only once the lock sidecar holds the lock.
    init_containers.append(containers.lock_sidecar(spec, runner_image))
    claim = containers.claim_container(spec, runner_image)
    if claim is not None:  # after the lock sidecar: it runs once the lock is held
        init_containers.append(claim)
    pod["volumes"].append(
        {"name": containers.LOCK_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
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
