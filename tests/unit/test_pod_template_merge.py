"""spec.podTemplate, spec.volumeMounts and spec.securityContext merged into run, plan and
rehearsal pods: the user's values over Lockstep's defaults, Lockstep's own fields kept."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep import constants
from lockstep.jobs import containers, job_spec, naming
from lockstep.model import SpecError, parse_spec, spec_hash

OWNER = naming.Owner(name="shop", namespace="shop", uid="1234-5678")
HASH = "a1b2c3d4e5f6" + "0" * 52
RUNNER = "ghcr.io/lockstep-dev/lockstep:0.1.0"
TEMPLATE: dict[str, Any] = {
    "metadata": {
        "labels": {"azure.workload.identity/use": "true", "lockstep-team": "shop"},
        "annotations": {"vault.hashicorp.com/agent-inject": "true"},
    },
    "spec": {
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}],
        "priorityClassName": "batch-low",
        "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000]},
        "volumes": [{"name": "certs", "secret": {"secretName": "client-certs"}}],
        "terminationGracePeriodSeconds": 60,
    },
}


def spec_of(tool: str = "sql", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tool": tool,
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    }
    if tool in ("sql", "alembic") and "image" not in extra:
        base["source"] = {"configMapRef": {"name": "shop-migrations"}}
    else:
        base["image"] = "ghcr.io/acme/shop:1"
    return {**base, **extra}


def build(raw: dict[str, Any], **request: Any) -> dict[str, Any]:
    return job_spec.build_job(
        OWNER,
        parse_spec(raw),
        HASH,
        naming.JobRequest(attempt=0, target="head", **request),
        "dbkey123",
        RUNNER,
    )


def template_of(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]
    return result


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    every = [*pod.get("initContainers", []), *pod["containers"]]
    return next(c for c in every if c["name"] == name)


def test_pods_leave_istio_out_by_default() -> None:
    metadata = template_of(build(spec_of()))["metadata"]
    assert metadata["annotations"] == {"sidecar.istio.io/inject": "false"}


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_a_users_istio_setting_replaces_the_default(where: str) -> None:
    raw = spec_of(podTemplate={"metadata": {where: {"sidecar.istio.io/inject": "true"}}})
    metadata = template_of(build(raw))["metadata"]
    assert metadata[where]["sidecar.istio.io/inject"] == "true"
    other = "annotations" if where == "labels" else "labels"
    assert "sidecar.istio.io/inject" not in metadata.get(other, {})


def test_template_metadata_and_pod_fields_are_merged_over_lockstep_s() -> None:
    job = build(spec_of(podTemplate=TEMPLATE))
    template = template_of(job)
    labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]
    assert labels["azure.workload.identity/use"] == "true"
    assert labels[constants.LABEL_MIGRATION] == "shop"  # Lockstep's labels are all there
    assert annotations == {
        "sidecar.istio.io/inject": "false",
        "vault.hashicorp.com/agent-inject": "true",
    }
    pod = template["spec"]
    assert pod["affinity"] == TEMPLATE["spec"]["affinity"]
    assert pod["topologySpreadConstraints"] == TEMPLATE["spec"]["topologySpreadConstraints"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["terminationGracePeriodSeconds"] == 60
    # Volumes are added to Lockstep's, which stay.
    names = [v["name"] for v in pod["volumes"]]
    assert names[-1] == "certs" and {"tmp", "migrations", containers.LOCK_VOLUME} <= set(names)
    # The pod security context: each key given replaces Lockstep's, the others stay.
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": containers.RUNNER_USER_ID,
        "runAsGroup": containers.RUNNER_USER_ID,
        "fsGroup": 2000,
        "supplementalGroups": [3000],
    }
    # Lockstep's own fields are untouched.
    assert pod["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["initContainers"]] == [constants.LOCK_CONTAINER]


def test_migrate_container_gets_the_mounts_and_the_security_context_override() -> None:
    raw = spec_of(
        "knex",
        podTemplate=TEMPLATE,
        volumeMounts=[{"name": "certs", "mountPath": "/certs", "readOnly": True}],
        securityContext={"readOnlyRootFilesystem": False, "runAsUser": 1000},
    )
    pod = template_of(build(raw))["spec"]
    migrate = container(pod, constants.MIGRATE_CONTAINER)
    assert migrate["volumeMounts"][-1] == {"name": "certs", "mountPath": "/certs", "readOnly": True}
    assert migrate["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Lockstep's own containers keep the restricted context and get no user mounts.
    lock = container(pod, constants.LOCK_CONTAINER)
    assert lock["securityContext"]["readOnlyRootFilesystem"] is True
    assert all(m["name"] != "certs" for m in lock["volumeMounts"])


def test_plan_pods_carry_the_template_and_the_render_container_the_mounts() -> None:
    raw = spec_of(
        "alembic",
        image="ghcr.io/acme/shop:1",
        podTemplate=TEMPLATE,
        volumeMounts=[{"name": "certs", "mountPath": "/certs"}],
    )
    job = build(raw, phase=constants.PHASE_PLAN, plan_salt="s" * 16)
    template = template_of(job)
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    pod = template["spec"]
    assert pod["priorityClassName"] == "batch-low"
    render = container(pod, "render")
    assert {"name": "certs", "mountPath": "/certs"} in render["volumeMounts"]


def test_rehearsal_steps_run_like_the_migrate_container() -> None:
    raw = spec_of(
        "knex",
        podTemplate=TEMPLATE,
        volumeMounts=[{"name": "certs", "mountPath": "/certs"}],
        securityContext={"readOnlyRootFilesystem": False},
        verify={"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}},
    )
    pod = template_of(build(raw))["spec"]
    steps = [
        c
        for c in pod["initContainers"]
        if c["name"].startswith("rehearse-") and c["name"] != "rehearse-1-reset"
    ]
    assert steps
    for step in steps:
        assert {"name": "certs", "mountPath": "/certs"} in step["volumeMounts"]
        assert step["securityContext"]["readOnlyRootFilesystem"] is False


def test_template_changes_start_a_new_run() -> None:
    plain = spec_of()
    labelled = spec_of(podTemplate={"metadata": {"labels": {"team": "shop"}}})
    assert spec_hash(plain) != spec_hash(labelled)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (
            {"podTemplate": {"spec": {"containers": []}}},
            "podTemplate.spec.containers",
            "use spec.image",
        ),
        (
            {"podTemplate": {"spec": {"restartPolicy": "Always"}}},
            "podTemplate.spec.restartPolicy",
            "spec.retry",
        ),
        (
            {"podTemplate": {"spec": {"nodeSelector": {}}}},
            "podTemplate.spec.nodeSelector",
            "spec.nodeSelector",
        ),
        ({"podTemplate": {"spec": {"hostPID": True}}}, "podTemplate.spec.hostPID", "not a field"),
        (
            {"podTemplate": {"metadata": {"labels": {"lockstep.dev/migration": "x"}}}},
            "podTemplate.metadata.labels",
            "Lockstep's",
        ),
        (
            {"podTemplate": {"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}},
            "podTemplate.spec.volumes",
            "volume Lockstep mounts",
        ),
        (
            {"volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
            "volumeMounts",
            "is not a volume",
        ),
        (
            {
                "podTemplate": {"spec": {"volumes": [{"name": "w", "emptyDir": {}}]}},
                "volumeMounts": [{"name": "w", "mountPath": "/run/lockstep/"}],
            },
            "volumeMounts",
            "is Lockstep's",
        ),
    ],
)
def test_parse_spec_refuses_what_lockstep_owns(
    extra: dict[str, Any], field: str, words: str
) -> None:
    """For resources created before the CRD knew these fields (the CRD refuses them too)."""
    with pytest.raises(SpecError) as raised:
        parse_spec(spec_of(**extra))
    assert raised.value.field == field
    assert words in str(raised.value)
