"""What every part of `lockstep.kube` shares: the client's API groups, the errors callers see
instead of the client's, and plain JSON bodies."""

from __future__ import annotations

import functools
import json
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


# One client object per API group, made on first use (after `connection.load_config`).


@functools.cache
def core() -> client.CoreV1Api:
    return client.CoreV1Api()


@functools.cache
def batch() -> client.BatchV1Api:
    return client.BatchV1Api()


@functools.cache
def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


@functools.cache
def coordination() -> client.CoordinationV1Api:
    return client.CoordinationV1Api()


@functools.cache
def admission() -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api()


@functools.cache
def apps() -> client.AppsV1Api:
    return client.AppsV1Api()
