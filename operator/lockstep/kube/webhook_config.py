"""The gate webhook's serving certificate (a kubernetes.io/tls Secret) and its
MutatingWebhookConfiguration."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api, objects


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
    try:
        if replace:
            api.core().replace_namespaced_secret(name, namespace, body)  # type: ignore[arg-type]
        else:
            api.core().create_namespaced_secret(namespace, body)  # type: ignore[arg-type]
    except ApiException as error:
        raise api.translate(error, f"Secret {namespace}/{name}") from None


def apply_mutating_webhook(body: Mapping[str, Any]) -> None:
    """Create or replace a MutatingWebhookConfiguration (development mode: URL webhooks)."""
    name = body["metadata"]["name"]
    try:
        current = api.admission().read_mutating_webhook_configuration(name)
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, f"MutatingWebhookConfiguration {name}") from None
        api.admission().create_mutating_webhook_configuration(dict(body))  # type: ignore[arg-type]
        return
    replacement = {**body, "metadata": {**body["metadata"]}}
    replacement["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
    try:
        api.admission().replace_mutating_webhook_configuration(name, replacement)  # type: ignore[arg-type]
    except ApiException as error:
        raise api.translate(error, f"MutatingWebhookConfiguration {name}") from None


def inject_webhook_ca(name: str, ca_bundle: bytes) -> bool:
    """Put the CA into every webhook of a configuration (made by the chart); False if absent."""
    try:
        current = api.admission().read_mutating_webhook_configuration(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise api.translate(error, f"MutatingWebhookConfiguration {name}") from None
    encoded = base64.b64encode(ca_bundle).decode()
    patch = [
        {"op": "replace", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        if webhook.client_config.ca_bundle
        else {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        for index, webhook in enumerate(current.webhooks or [])
        if webhook.client_config.ca_bundle != encoded  # unchanged: no write
    ]
    if patch:
        api.admission().patch_mutating_webhook_configuration(name, patch)
    return True
