"""The gate webhook's serving certificate (a kubernetes.io/tls Secret) and its
MutatingWebhookConfiguration."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api, objects

_SECRETS = "/api/v1/namespaces/{namespace}/secrets"
_WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def read_secret_data(namespace: str, name: str) -> dict[str, bytes] | None:
    """All keys of a Secret, decoded; None when it does not exist."""
    try:
        data = objects.read_secret_raw(namespace, name)
    except api.NotFoundError:
        return None
    return {k: base64.b64decode(v) for k, v in data.items()}


def write_tls_secret(
    namespace: str, name: str, data: Mapping[str, bytes], replace: bool = False
) -> None:
    """Create (or replace) a kubernetes.io/tls Secret; ConflictError if another replica won."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {constants.LABEL_NAME: "lockstep", constants.LABEL_PART_OF: "lockstep"},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    where = {"namespace": namespace, "name": name}
    try:
        if replace:
            response = api.request("PUT", _SECRETS + "/{name}", path_params=where, body=body)
        else:
            response = api.request("POST", _SECRETS, path_params=where, body=body)
        response.drain_conn()
    except ApiException as error:
        raise api.translate(error, f"Secret {namespace}/{name}") from None


def read_mutating_webhook(name: str) -> dict[str, Any] | None:
    """A MutatingWebhookConfiguration as the API server serves it; None if there is none."""
    try:
        return api.plain_json(api.request("GET", _WEBHOOKS + "/{name}", path_params={"name": name}))
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, f"MutatingWebhookConfiguration {name}") from None
        return None


def apply_mutating_webhook(body: Mapping[str, Any], current: Mapping[str, Any] | None) -> None:
    """Create or replace a MutatingWebhookConfiguration (development mode: URL webhooks).

    `current` is the live object as `read_mutating_webhook` returned it (None: absent), read once
    by the caller, which also decides from it which URL to register. Re-applied every minute:
    when the live object already says everything `body` says (the API server adds defaults),
    nothing is written, so watchers (Argo CD, audit logs) see no churn."""
    name = body["metadata"]["name"]
    if current is None:
        api.request("POST", _WEBHOOKS, body=dict(body)).drain_conn()
        return
    if says_everything(current.get("webhooks"), body.get("webhooks")) and says_everything(
        current["metadata"].get("labels"), body["metadata"].get("labels")
    ):
        return
    replacement = {**body, "metadata": {**body["metadata"]}}
    replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    try:
        where = {"name": name}
        api.request("PUT", _WEBHOOKS + "/{name}", path_params=where, body=replacement).drain_conn()
    except ApiException as error:
        raise api.translate(error, f"MutatingWebhookConfiguration {name}") from None


def says_everything(live: Any, wanted: Any) -> bool:
    """Whether `live` holds every field of `wanted` with the same value (lists: item by item, in
    order, same length); fields only `live` has (server defaults) do not matter."""
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            says_everything(live.get(key), value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(says_everything(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def inject_webhook_ca(name: str, ca_bundle: bytes) -> bool:
    """Put the CA into every webhook of a configuration (made by the chart); False if absent."""
    current = read_mutating_webhook(name)
    if current is None:
        return False
    encoded = base64.b64encode(ca_bundle).decode()
    bundles = [(w.get("clientConfig") or {}).get("caBundle") for w in current.get("webhooks") or []]
    patch = [
        {
            "op": "replace" if bundle else "add",
            "path": f"/webhooks/{index}/clientConfig/caBundle",
            "value": encoded,
        }
        for index, bundle in enumerate(bundles)
        if bundle != encoded  # unchanged: no write
    ]
    if patch:
        path, where = _WEBHOOKS + "/{name}", {"name": name}
        response = api.request(
            "PATCH", path, path_params=where, body=patch, content_type=api.JSON_PATCH
        )
        response.drain_conn()
    return True
