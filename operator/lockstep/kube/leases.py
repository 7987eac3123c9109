"""The leader election's Lease: read it, and write it only if nobody changed it meanwhile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api

_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def read_lease(namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The Lease's spec and resourceVersion, or None when there is no Lease yet."""
    try:
        where = {"namespace": namespace, "name": name}
        response = api.request("GET", _LEASES + "/{name}", path_params=where)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api.translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None
    lease = api.plain_json(response)
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
    where = {"namespace": namespace, "name": name}
    try:
        if resource_version is None:
            response = api.request("POST", _LEASES, path_params=where, body=body)
        else:
            body["metadata"]["resourceVersion"] = resource_version
            response = api.request("PUT", _LEASES + "/{name}", path_params=where, body=body)
        response.drain_conn()  # no model: the caller keeps what it wrote
    except ApiException as error:
        raise api.translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None
