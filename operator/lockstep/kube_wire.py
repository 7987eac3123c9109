"""One Kubernetes API request, sent the way the client's generated methods send it, without them.

The operator (:mod:`lockstep.kube.api`) and the kubectl plugin (:mod:`lockstep.plugin.client`)
send plain JSON and read plain JSON. The client's generated API group classes would cost them
29.2 MiB of RSS and about a second of CPU at start (from client 36 on, importing a group builds
pydantic validators for all its methods: bench/client_first_calls.py), and the request path
under them changed shape between client versions (35 and older: ``call_api`` with the path and
its parameters; 36 on: ``param_serialize`` then ``call_api``). This module uses only what every
client from 29 on has: the configuration (host, token, its refresh hook), the ApiClient's
default headers and its REST client's urllib3 pool manager (TLS, client certificates, proxy).
The plugin's standalone executable carries client 35, the operator's image 37.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
JSON = "application/json"

Query = Mapping[str, str | int | bool | None]
Timeout = float | tuple[float, float] | None


def send(
    sender: client.ApiClient,
    method: str,
    path: str,
    *,
    path_params: Mapping[str, str] | None = None,
    query: Query | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: Timeout = None,
) -> Any:
    """Send one request; the urllib3 response comes back unread, to read (``.data``), drain
    (``drain_conn()``) or iterate (a watch, a log).

    ``path`` has ``{namespace}``-style placeholders, filled from ``path_params`` (URL-quoted);
    ``query`` keys are the wire's (``labelSelector``, ``continue``), None values left out,
    booleans as ``true``/``false``; a body is JSON (``content_type`` says which patch it is).
    The bearer token is asked of the configuration on every request (an exec, OIDC or
    in-cluster configuration refreshes it in its hook). ApiException for any answer outside
    2xx, with the status, reason and body; urllib3 or OS errors when nothing answers.
    """
    configuration = sender.configuration
    url = str(configuration.host) + _filled(path, path_params or {}) + _query_string(query)
    headers: dict[str, str] = {**sender.default_headers, "Accept": JSON}
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"])] = str(setting["value"])
    encoded = None
    if body is not None:
        headers["Content-Type"] = content_type or JSON
        encoded = json.dumps(body)  # plain JSON: the callers build dicts and lists of it
    answer = sender.rest_client.pool_manager.request(
        method,
        url,
        body=encoded,
        headers=headers,
        timeout=_timeout(timeout),
        preload_content=False,
    )
    if not 200 <= answer.status <= 299:
        raise _api_exception(answer)
    return answer


def plain_json(response: Any) -> dict[str, Any]:
    """An unread response's body as plain JSON: no model classes, most of a small request's
    CPU. Reading it to the end returns the connection to the pool (urllib3)."""
    return cast(dict[str, Any], json.loads(response.data))


def _filled(path: str, path_params: Mapping[str, str]) -> str:
    for name, value in path_params.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


def _query_string(query: Query | None) -> str:
    pairs = [
        (name, ("true" if value else "false") if isinstance(value, bool) else str(value))
        for name, value in (query or {}).items()
        if value is not None
    ]
    return "?" + urlencode(pairs) if pairs else ""


def _timeout(timeout: Timeout) -> urllib3.Timeout | None:
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)


def _api_exception(answer: Any) -> ApiException:
    """The client's own exception, as its generated methods raise it (status, reason, body as
    text, headers), built the same way on every client version."""
    error = ApiException(status=answer.status, reason=answer.reason)
    error.body = answer.data.decode("utf-8", errors="replace")
    error.headers = answer.headers
    answer.release_conn()
    return error
