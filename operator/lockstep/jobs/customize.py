"""spec.podTemplate merged over the pod Lockstep builds (pure).

Lockstep's own values come first and the user's are merged over them, except where Lockstep
owns the value: its labels (the watches find pods by them) win over the user's, and the fields
it owns never reach here (the CRD and :mod:`lockstep.pod_template` refuse them). Pod-level
`securityContext` keys replace Lockstep's one by one (the restricted defaults stay unless a key
is set); `volumes` are added to Lockstep's. docs/pod-template.md is the user's page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockstep import pod_template
from lockstep.model import Spec


def pod_metadata(spec: Spec, labels: Mapping[str, str]) -> dict[str, Any]:
    """The pod template's metadata: the user's labels under Lockstep's, and annotations with
    Lockstep's mesh opt-out first (a user's own `sidecar.istio.io/inject` replaces it)."""
    template = spec.pod_template
    annotations = {**pod_template.default_annotations(template), **template.annotations}
    metadata: dict[str, Any] = {"labels": {**template.labels, **labels}}
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def apply_pod_template(pod: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """``pod`` with spec.podTemplate.spec merged in (returned for chaining; ``pod`` is changed)."""
    for key, value in spec.pod_template.pod_spec.items():
        if key == "securityContext":
            pod[key] = {**(pod.get(key) or {}), **value}
        elif key == "volumes":
            pod[key] = [*(pod.get(key) or []), *(dict(v) for v in value)]
        else:
            pod[key] = value
    return pod
