"""The plugin's only door to the Kubernetes API (the official client), kubectl-style config.

`connect` reads the kubeconfig like kubectl does (--kubeconfig, else $KUBECONFIG, else
~/.kube/config; --context, else the current context; the context's namespace as default) and
returns a `KubeCluster` whose methods return plain dicts and raise only `errors.PluginError`s.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lockstep import constants, kube_wire
from lockstep.plugin import errors

MIGRATIONS = errors.RESOURCE
_MIGRATIONS = f"/apis/{constants.GROUP}/{constants.VERSION}"
_IN_NAMESPACE = "/namespaces/{namespace}"
TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def kubeconfig_paths(explicit: str | None) -> list[str]:
    """Where kubectl would look: --kubeconfig, else every file in $KUBECONFIG, else ~/.kube."""
    if explicit:
        return [explicit]
    from_env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return from_env or [str(Path("~/.kube/config").expanduser())]


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeCluster:
    paths = kubeconfig_paths(kubeconfig)
    shown = os.pathsep.join(paths)
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    if not existing:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster()
        raise errors.ConfigError(
            f"kubeconfig {shown} not found: pass --kubeconfig FILE or set KUBECONFIG"
        )
    joined = os.pathsep.join(existing)
    try:
        contexts, current = config.list_kube_config_contexts(config_file=joined)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError) as error:
        raise errors.ConfigError(f"kubeconfig {shown} is not usable: {error}") from None
    by_name = {str(c.get("name")): c for c in contexts or []}
    chosen = context or str((current or {}).get("name") or "")
    if chosen not in by_name:
        if context is None:
            raise errors.ConfigError(
                f"kubeconfig {shown} has no current context: pass --context "
                f"(contexts: {', '.join(sorted(by_name)) or 'none'})"
            )
        raise errors.ContextNotFoundError(context, shown, list(by_name))
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=joined,
            context=chosen,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError) as error:
        raise errors.ConfigError(f"context {chosen!r} in {shown} is not usable: {error}") from None
    namespace = (by_name[chosen].get("context") or {}).get("namespace") or "default"
    return KubeCluster(configuration, str(namespace))


def _in_cluster() -> KubeCluster:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
    except (ConfigException, OSError) as error:
        raise errors.ConfigError(
            f"no kubeconfig and no usable in-cluster config: {error}"
        ) from None
    return KubeCluster(configuration, namespace or "default")


class KubeCluster:
    """DatabaseMigrations, their Jobs, pods and logs, as plain JSON."""

    def __init__(self, configuration: client.Configuration, default_namespace: str) -> None:
        configuration.retries = 1  # a dead server answers in seconds, not after urllib3's 3 tries
        self.server = str(configuration.host)
        self.default_namespace = default_namespace
        self._api = client.ApiClient(configuration)

    def _request(
        self,
        method: str,
        path: str,
        where: Mapping[str, str],
        query: kube_wire.Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: tuple[float, float] | None = TIMEOUT,
    ) -> Any:
        """One request as `lockstep.kube_wire` sends it (no generated API group class: their
        pydantic validators cost a second at each start), the urllib3 response unread.
        ApiException outside 2xx, like the generated methods'."""
        return kube_wire.send(
            self._api,
            method,
            path,
            path_params=where,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout,
        )

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        with self._errors("list", MIGRATIONS, namespace):
            scope = "" if namespace is None else _IN_NAMESPACE
            path = f"{_MIGRATIONS}{scope}/{constants.PLURAL}"
            response = self._request("GET", path, {"namespace": namespace or ""})
        items = _items(response)
        return sorted(items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"]))

    def get_migration(self, namespace: str, name: str) -> dict[str, Any]:
        with self._errors("get", MIGRATIONS, namespace, name):
            path = f"{_MIGRATIONS}{_IN_NAMESPACE}/{constants.PLURAL}/{{name}}"
            response = self._request("GET", path, {"namespace": namespace, "name": name})
        return kube_wire.plain_json(response)

    def patch_migration(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the resource (not its status)."""
        with self._errors("patch", MIGRATIONS, namespace, name):
            response = self._request(
                "PATCH",
                f"{_MIGRATIONS}{_IN_NAMESPACE}/{constants.PLURAL}/{{name}}",
                {"namespace": namespace, "name": name},
                query={"fieldManager": "kubectl-lockstep"},
                body=dict(patch),
                content_type=kube_wire.MERGE_PATCH,
            )
        return kube_wire.plain_json(response)

    def jobs_of(self, namespace: str, migration: str) -> list[dict[str, Any]]:
        selector = f"{constants.LABEL_MIGRATION}={migration}"
        with self._errors("list", "jobs.batch", namespace):
            response = self._request(
                "GET",
                "/apis/batch/v1/namespaces/{namespace}/jobs",
                {"namespace": namespace},
                query={"labelSelector": selector},
            )
        return _items(response)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        with self._errors("get", "jobs.batch", namespace, name, kind="job"):
            response = self._request(
                "GET",
                "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                {"namespace": namespace, "name": name},
            )
        return kube_wire.plain_json(response)

    def pods_of_job(self, namespace: str, job: str) -> list[dict[str, Any]]:
        with self._errors("list", "pods", namespace):
            response = self._request(
                "GET",
                "/api/v1/namespaces/{namespace}/pods",
                {"namespace": namespace},
                query={"labelSelector": f"job-name={job}"},
            )
        return _items(response)

    def pod_log(self, namespace: str, pod: str, container: str, follow: bool) -> Iterator[str]:
        """The container's log, in chunks as they arrive (until it ends when following)."""
        with self._errors("get", "pods/log", namespace, pod, kind="pod"):
            # Following has no read timeout: a quiet migration may print nothing for minutes.
            response = self._request(
                "GET",
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                {"namespace": namespace, "name": pod},
                query={"container": container, "follow": follow},
                timeout=None if follow else TIMEOUT,
            )
        return self._chunks(response, namespace)

    def _chunks(self, response: Any, namespace: str) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with self._errors("get", "pods/log", namespace):
                for chunk in response.stream(4096):
                    yield decoder.decode(chunk)
                yield decoder.decode(b"", final=True)
        finally:
            response.release_conn()

    def _errors(
        self,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None = None,
        kind: str = "databasemigration",
    ) -> _Translate:
        return _Translate(self.server, verb, resource, namespace, name, kind)


def _items(response: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube_wire.plain_json(response).get("items") or []
    return items


class _Translate:
    """Turns the client's exceptions into one-line `PluginError`s for the call it wraps."""

    def __init__(
        self,
        server: str,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None,
        kind: str,
    ) -> None:
        self.server, self.verb, self.resource = server, verb, resource
        self.namespace, self.name, self.kind = namespace, name, kind

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if isinstance(error, ApiException):
            raise translate_api_error(
                error, self.server, self.verb, self.resource, self.namespace, self.name, self.kind
            ) from None
        if isinstance(error, urllib3.exceptions.HTTPError | OSError):
            raise errors.UnreachableError(self.server, _cause(error)) from None


def translate_api_error(
    error: ApiException,
    server: str,
    verb: str,
    resource: str,
    namespace: str | None,
    name: str | None = None,
    kind: str = "databasemigration",
) -> errors.PluginError:
    body = _body(error)
    message = str(body.get("message") or error.reason or "")
    if error.status == 403:
        user = re.search(r'User "([^"]+)"', message)
        return errors.ForbiddenError(verb, resource, namespace, user.group(1) if user else None)
    if error.status == 401:
        return errors.ApiError(
            f"the API server at {server} rejected your credentials (401 Unauthorized): log in "
            "again or renew the kubeconfig's token"
        )
    if error.status == 404:
        details = body.get("details") or {}
        if resource == MIGRATIONS and not (name and details.get("name") == name):
            return errors.CrdMissingError(server)  # the type is unknown, not the object
        return errors.NotFoundError(kind, name or "?", namespace or "")
    what = f"{verb} {resource}" + (f" {name!r}" if name else "")
    where = f" in namespace {namespace!r}" if namespace else ""
    return errors.ApiError(f"cannot {what}{where}: HTTP {error.status}: {message}")


def _body(error: ApiException) -> dict[str, Any]:
    raw = error.body
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _cause(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for needle, said in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("timed out", "timed out"),
        ("CERTIFICATE_VERIFY_FAILED", "server certificate not trusted"),
    ):
        if needle in text:
            return said
    return type(reason).__name__
