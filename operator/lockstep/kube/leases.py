"""The leader election's Lease: read it, and write it only if nobody changed it meanwhile."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import urllib3
from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api


def read_lease(namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The Lease's spec and resourceVersion, or None when there is no Lease yet."""
    try:
        response = api.coordination().read_namespaced_lease(name, namespace, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api.translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None
    lease = json.loads(cast(Any, response).data)
    return dict(lease.get("spec") or {}), str(lease["metadata"]["resourceVersion"])


def write_lease(
    namespace: str, name: str, spec: Mapping[str, Any], resource_version: str | None
) -> None:
    """Create the Lease, or replace it only if nobody changed it since `resource_version`.

    The optimistic concurrency of the replace is what makes two replicas unable to both win.
    """
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {constants.LABEL_NAME: "lockstep", constants.LABEL_PART_OF: "lockstep"},
        },
        "spec": dict(spec),
    }
    try:
        if resource_version is None:
            api.coordination().create_namespaced_lease(namespace, body)  # type: ignore[arg-type]
        else:
            body["metadata"]["resourceVersion"] = resource_version
            api.coordination().replace_namespaced_lease(name, namespace, body)  # type: ignore[arg-type]
    except ApiException as error:
        raise api.translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None
