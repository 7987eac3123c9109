"""spec.podTemplate and the migrate container's extras, as parsed from the resource (pure).

Platform teams customise migration pods the way they customise any pod: labels and annotations
(a mesh's opt-out, a workload-identity label, Vault's agent), scheduling (affinity, topology
spread, priority), extra volumes, and a security context. Lockstep builds the pod and merges
these over its own defaults (:mod:`lockstep.jobs.customize`); the fields Lockstep owns (the
containers, the restart policy) are refused by the CRD with a message, and again here for a
resource written before the schema knew them. docs/pod-template.md is the user's page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# podTemplate.spec fields merged into the pod as they are (the CRD declares each of them).
POD_FIELDS: Final = (
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "schedulerName",
    "securityContext",
    "volumes",
    "dnsPolicy",
    "dnsConfig",
    "hostAliases",
    "terminationGracePeriodSeconds",
)
# podTemplate.spec fields Lockstep owns or takes elsewhere, and what to do instead.
OWNED_FIELDS: Final[Mapping[str, str]] = {
    "containers": "Lockstep builds the containers; use spec.image, spec.command, spec.env",
    "initContainers": "Lockstep's init containers hold the lock and convert the URL",
    "ephemeralContainers": "they are added to running pods with kubectl debug, not here",
    "restartPolicy": "a migration runs once per Job (Never); use spec.retry",
    "activeDeadlineSeconds": "use spec.timeouts.jobSeconds",
    "nodeSelector": "use spec.nodeSelector",
    "tolerations": "use spec.tolerations",
    "serviceAccountName": "use spec.serviceAccountName",
    "imagePullSecrets": "use spec.imagePullSecrets",
}
# Names and mount paths of the volumes Lockstep mounts itself.
RESERVED_VOLUMES: Final = frozenset(
    {"tmp", "migrations", "lockstep-env", "lockstep-run", "lockstep-plan", "lockstep-tls"}
)
RESERVED_MOUNT_PATHS: Final = frozenset(
    {
        "/tmp",  # noqa: S108 - a path in the pod, not a file here
        "/migrations",
        "/lockstep",
        "/run/lockstep",
        "/lockstep-plan",
        "/etc/lockstep/tls",
    }
)
# Label and annotation keys under Lockstep's own prefix: Lockstep finds its pods by them.
RESERVED_PREFIX: Final = "lockstep.dev/"
# A mesh sidecar that never exits keeps a Job's pod running after the migration: migration pods
# stay out of an Istio mesh unless the user sets this key (as a label or an annotation).
ISTIO_INJECT: Final = "sidecar.istio.io/inject"


class TemplateError(ValueError):
    """A podTemplate Lockstep cannot use; `field` is the path below spec."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PodTemplate:
    """spec.podTemplate: the pod's metadata and the pod spec fields Lockstep merges."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def volume_names(self) -> frozenset[str]:
        return frozenset(str(v.get("name")) for v in self.pod_spec.get("volumes") or ())


def parse_pod_template(raw: Mapping[str, Any]) -> PodTemplate:
    metadata = _object(raw, "metadata", "podTemplate.metadata")
    spec = _object(raw, "spec", "podTemplate.spec")
    for key in spec:
        if key in OWNED_FIELDS:
            raise TemplateError(
                f"podTemplate.spec.{key}", f"is set by Lockstep: {OWNED_FIELDS[key]}"
            )
        if key not in POD_FIELDS:
            raise TemplateError(f"podTemplate.spec.{key}", "is not a field Lockstep merges")
    labels = _strings(metadata, "labels", "podTemplate.metadata.labels")
    annotations = _strings(metadata, "annotations", "podTemplate.metadata.annotations")
    for path, keys in (("labels", labels), ("annotations", annotations)):
        owned = sorted(k for k in keys if k.startswith(RESERVED_PREFIX))
        if owned:
            raise TemplateError(
                f"podTemplate.metadata.{path}",
                f"{owned[0]!r}: keys under lockstep.dev/ are Lockstep's",
            )
    for volume in spec.get("volumes") or ():
        if volume.get("name") in RESERVED_VOLUMES:
            raise TemplateError(
                "podTemplate.spec.volumes", f"{volume.get('name')!r} is a volume Lockstep mounts"
            )
    return PodTemplate(labels=labels, annotations=annotations, pod_spec=dict(spec))


def parse_volume_mounts(raw: Any, template: PodTemplate) -> tuple[Mapping[str, Any], ...]:
    """spec.volumeMounts of the migrate container: podTemplate volumes, not Lockstep's paths."""
    mounts = tuple(raw or ())
    for mount in mounts:
        if mount.get("name") not in template.volume_names:
            raise TemplateError(
                "volumeMounts",
                f"{mount.get('name')!r} is not a volume of spec.podTemplate.spec.volumes",
            )
        if str(mount.get("mountPath", "")).rstrip("/") in RESERVED_MOUNT_PATHS:
            raise TemplateError("volumeMounts", f"{mount.get('mountPath')} is Lockstep's")
    return mounts


def default_annotations(template: PodTemplate) -> dict[str, str]:
    """Lockstep's pod annotations, before the user's: Istio injection off, unless set."""
    if ISTIO_INJECT in template.labels or ISTIO_INJECT in template.annotations:
        return {}
    return {ISTIO_INJECT: "false"}


def _object(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise TemplateError(path, f"must be an object, got {type(value).__name__}")
    return value


def _strings(raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _object(raw, key, path).items()}
