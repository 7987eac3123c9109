"""What every part of `lockstep.kube` shares: one raw request through the client's ApiClient,
the errors callers see instead of the client's, and plain JSON bodies."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException


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


def plain_json(response: Any) -> dict[str, Any]:
    """A `_preload_content=False` body as plain JSON: no model classes, most of a small
    request's CPU. Reading it to the end returns the connection to the pool (urllib3)."""
    return cast(dict[str, Any], json.loads(response.data))


# Every request goes through one ApiClient (made on first use, after `connection.load_config`)
# but none of the client's generated API group classes: importing one builds pydantic
# validators for each of its methods (29.2 MiB RSS and ~1 s CPU for the five groups the
# operator called, 4 MiB more for AppsV1Api: bench/client_first_calls.py), and Lockstep sends
# and reads plain JSON anyway (bench/raw_first_calls.py: 0.5 MiB for every kind of request).

# What a generated patch method's Content-Type comes to (rest.py turns its default, JSON Patch,
# into a strategic merge patch for a dict body): pass one of these to `request`.
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Query = Mapping[str, str | int | bool | None]


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
    timeout: float | tuple[float, float] | None = None,
) -> Any:
    """Send one request as the generated methods do with `_preload_content=False`: `path` with
    `{namespace}`-style placeholders filled from `path_params` (URL-quoted), query keys
    as on the wire (`labelSelector`, `continue`), None values left out; the bearer token (and
    an exec or OIDC kubeconfig's refresh) from the configuration; the urllib3 response unread,
    to read (`plain_json`), drain (`drain_conn()`) or iterate line by line (a watch).
    ApiException for any answer outside 2xx, urllib3/OS errors when the server is unreachable."""
    sender = shared_client()
    headers: dict[str, str] = {"Accept": "application/json"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    serialized = sender.param_serialize(
        method=method,
        resource_path=path,
        path_params=dict(path_params or {}),
        query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = sender.call_api(*serialized, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=answer, body=None, data=None)
    return answer.response
