"""The small JSON client for the Kubernetes API of the test bed and the benchmarks.

The pod agent and the bench (its observer, floor client and stand-in kubelet) use it.

Objects go in and come out as plain dicts with the API's own camelCase field
names, so the agent's code reads like the API reference. The kubeconfig is
loaded with the official client (it handles inline certificate data); requests
go through urllib3 with explicit content types, which keeps patches, watches
and the ``pods/binding`` subresource predictable across client versions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

JSON = dict[str, Any]

log = logging.getLogger(__name__)

PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}

# Errors that mean "the apiserver is not reachable right now": retry later.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class ApiError(Exception):
    """A non-2xx answer from the apiserver."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {self.message}")

    @property
    def message(self) -> str:
        try:
            return str(json.loads(self.body).get("message", self.body))
        except (ValueError, AttributeError):
            return self.body[:500]


@dataclass(frozen=True)
class Endpoint:
    """Where the apiserver listens, as pods should see it."""

    host: str
    port: int


class KubeAPI:
    """Minimal, thread-safe REST access to one cluster."""

    def __init__(self, kubeconfig: str | Path, *, timeout: float = 30.0, pool: int = 32) -> None:
        self._config = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=self._config
        )
        self.server = str(self._config.host).rstrip("/")
        self.timeout = timeout
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool,
            block=False,
            cert_reqs="CERT_REQUIRED" if self._config.verify_ssl else "CERT_NONE",
            ca_certs=self._config.ssl_ca_cert,
            cert_file=self._config.cert_file,
            key_file=self._config.key_file,
            retries=False,
        )

    @property
    def endpoint(self) -> Endpoint:
        parts = urlsplit(self.server)
        return Endpoint(parts.hostname or "127.0.0.1", parts.port or 443)

    @property
    def ca_file(self) -> str | None:
        ca: str | None = self._config.ssl_ca_cert
        return ca

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "lockstep-testbed-podagent"}
        settings: Any = self._config.auth_settings()
        for auth in settings.values():
            if auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> JSON:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        response = self._pool.request(
            method,
            url,
            body=data,
            headers=self._headers(content_type if data is not None else None),
            timeout=timeout or self.timeout,
        )
        text = response.data.decode("utf-8", "replace")
        if response.status >= 300:
            raise ApiError(method, path, response.status, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, *, patch_type: str = "strategic") -> JSON:
        return self.request("PATCH", path, body=body, content_type=PATCH_TYPES[patch_type])

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body=body)

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int,
        *,
        query: dict[str, Any] | None = None,
        bookmarks: bool = True,
        opened: Callable[[Any], None] | None = None,
    ) -> Iterator[JSON]:
        """Yield watch events (``type``, ``object``) until the server ends the watch.

        ``opened`` is given the open response, for a caller that must be able to cut it off
        (``shutdown()``) from another thread.
        """
        query = {
            **(query or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if bookmarks:
            query["allowWatchBookmarks"] = "true"
        response = self._pool.request(
            "GET",
            f"{self.server}{path}?{urlencode(query)}",
            headers=self._headers(None),
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30),
        )
        if opened is not None:
            opened(response)
        try:
            if response.status >= 300:
                raise ApiError(
                    "GET", path, response.status, response.data.decode("utf-8", "replace")
                )
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()


# Errors worth a retry: the apiserver answered badly, or could not be reached.
API_ERRORS: tuple[type[BaseException], ...] = (ApiError, *TRANSPORT_ERRORS)


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}" + (f"/{sub}" if sub else "")


def is_not_found(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.status == 404


def binding(pod: JSON, node: str) -> JSON:
    """The ``pods/binding`` body that schedules ``pod`` onto ``node``."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def now_rfc3339() -> str:
    """Now, as the API's timestamps read (whole seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
