"""What every part of `lockstep.kube` shares: one raw request through the client's ApiClient,
the errors callers see instead of the client's, and plain JSON bodies."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lockstep import kube_wire


class NotFoundError(LookupError):
    """The object does not exist (HTTP 404)."""


class ConflictError(RuntimeError):
    """The object already exists, or changed under us (HTTP 409)."""


class KubeError(RuntimeError):
    """Any other API failure; the message carries the HTTP status and reason, never a body."""


class ExpiredError(KubeError):
    """HTTP 410: a list's continue token (or a resourceVersion) is older than the API server
    keeps history for; list again from the start."""


def translate(error: ApiException, what: str) -> Exception:
    if error.status == 404:
        return NotFoundError(f"{what} not found")
    if error.status == 409:
        return ConflictError(f"{what}: conflict ({error.reason})")
    if error.status == 410:
        return ExpiredError(f"{what}: HTTP 410 {error.reason}")
    return KubeError(f"{what}: HTTP {error.status} {error.reason}")


plain_json = kube_wire.plain_json  # an unread response's body as plain JSON


# Every request goes through one ApiClient (made on first use, after `connection.load_config`)
# but none of the client's generated API group classes (lockstep.kube_wire says why).

STRATEGIC_MERGE_PATCH = kube_wire.STRATEGIC_MERGE_PATCH
MERGE_PATCH = kube_wire.MERGE_PATCH
JSON_PATCH = kube_wire.JSON_PATCH
Query = kube_wire.Query


@functools.cache
def shared_client() -> client.ApiClient:
    return client.ApiClient()


def request(
    method: str,
    path: str,
    *,
    path_params: Mapping[str, str] | None = None,
    query: Query | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: kube_wire.Timeout = None,
) -> Any:
    """One request through the shared ApiClient (`kube_wire.send`): the urllib3 response
    unread; ApiException outside 2xx, urllib3/OS errors when the server is unreachable."""
    return kube_wire.send(
        shared_client(),
        method,
        path,
        path_params=path_params,
        query=query,
        body=body,
        content_type=content_type,
        timeout=timeout,
    )
