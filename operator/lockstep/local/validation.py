"""What the API server would say about each object of a local-mode YAML file.

Local mode must accept exactly what a cluster accepts, or a file that passes on a laptop fails in
the cluster (or the reverse). So a DatabaseMigration is checked against the CRD itself (the copy
of crds/databasemigrations.yaml shipped in this package; tests/unit/test_local_validation.py
fails when the copy is stale): nulls pruned and defaults filled as the API server does, then its
OpenAPI schema, its CEL rules, and unknown fields refused as `kubectl apply` (strict field
validation) refuses them. ConfigMaps and Secrets get the built-in rules of apimachinery.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from lockstep import constants, k8s_names
from lockstep.local import create_path, documents, openapi

CRD_FILE: Final = "databasemigrations.yaml"
CONFIG_MAP_MAX_BYTES: Final = 1024 * 1024
_METADATA_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    }
)
_CONFIG_MAP_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
)
_SECRET_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
)


@dataclass(frozen=True)
class Checked:
    """One object after the API server's treatment: its problems, or the object it would store."""

    kind: str
    namespace: str
    name: str
    problems: tuple[str, ...]
    body: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name or '(no name)'}"


@functools.cache
def migration_schema() -> Mapping[str, Any]:
    """The served version's openAPIV3Schema, read once from the packaged CRD."""
    text = importlib.resources.files("lockstep.local").joinpath(CRD_FILE).read_text("utf-8")
    crd = yaml.load(text, Loader=documents.SafeLoader)  # noqa: S506 - a safe loader (libyaml's)
    for version in crd["spec"]["versions"]:
        if version["name"] == constants.VERSION and version.get("served"):
            schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"the packaged CRD serves no version {constants.VERSION}")  # pragma: no cover


def check(document: Mapping[str, Any]) -> Checked:
    """Check one object of the file as the API server would on `kubectl apply`."""
    kind = document.get("kind")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else ""
    namespace = metadata.get("namespace")
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    problems = _metadata_problems(document)
    body: Mapping[str, Any] = document
    if kind == constants.KIND:
        body, more = _migration(document)
    elif kind == "ConfigMap":
        more = _config_map_problems(document)
    elif kind == "Secret":
        more = _secret_problems(document)
    else:
        more = []
    shown_kind = kind if isinstance(kind, str) and kind else "object"
    return Checked(shown_kind, namespace, str(name), tuple(problems + more), body)


def _migration(document: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    api_version = document.get("apiVersion")
    if api_version != constants.API_VERSION:
        served = f"{constants.GROUP}/{constants.VERSION}"
        return document, [f"apiVersion {_shown(api_version)}: use {served}"]
    schema = migration_schema()
    # With the status subresource, the API server drops `status` on create.
    without_status = {k: v for k, v in document.items() if k != "status"}
    pruned = openapi.prune_nulls(schema, without_status)
    problems = [
        f"{path}: unknown field (misspelled? the API server refuses it)"
        for path in openapi.unknown_fields(schema, pruned)
    ]
    defaulted = openapi.apply_defaults(schema, pruned)
    problems += [str(error) for error in create_path.validate(schema, defaulted)]
    return defaulted, problems


def _metadata_problems(document: Mapping[str, Any]) -> list[str]:
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return ["metadata: required: an object with at least a name"]
    problems = [f"metadata.{key}: unknown field" for key in metadata if key not in _METADATA_FIELDS]
    name = metadata.get("name")
    if not isinstance(name, str):
        problems.append(f"metadata.name {_shown(name)}: required, a string")
    elif problem := k8s_names.subdomain_problem(name):
        problems.append(f"metadata.name {name!r}: {problem}")
    namespace = metadata.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            problems.append(f"metadata.namespace {_shown(namespace)}: must be a string")
        elif problem := k8s_names.label_problem(namespace):
            problems.append(f"metadata.namespace {namespace!r}: {problem}")
    for field in ("labels", "annotations"):
        value = metadata.get(field)
        if value is not None and not _string_map(value):
            problems.append(f"metadata.{field}: must map strings to strings")
    return problems


def _config_map_problems(document: Mapping[str, Any]) -> list[str]:
    problems = _core_object_problems(document, _CONFIG_MAP_FIELDS)
    data, binary = document.get("data"), document.get("binaryData")
    size = 0
    for field, value in (("data", data), ("binaryData", binary)):
        if value is None:
            continue
        if not _string_map(value):
            problems.append(f"{field}: must map keys to strings (quote numbers and booleans)")
            continue
        problems += _key_problems(field, value)
        for key, content in value.items():
            content = content or ""
            size += len(str(key)) + len(content.encode("utf-8", "surrogatepass"))
            if field == "binaryData" and not _is_base64(content):
                problems.append(f"binaryData[{key!r}]: not base64")
    if isinstance(data, Mapping) and isinstance(binary, Mapping):
        for key in set(data) & set(binary):
            problems.append(f"binaryData[{key!r}]: duplicate of key {key!r} in data")
    if size > CONFIG_MAP_MAX_BYTES:
        problems.append(f"data: too long: must have at most {CONFIG_MAP_MAX_BYTES} bytes")
    return problems


def _secret_problems(document: Mapping[str, Any]) -> list[str]:
    problems = _core_object_problems(document, _SECRET_FIELDS)
    for field in ("data", "stringData"):
        value = document.get(field)
        if value is None:
            continue
        if not _string_map(value):
            problems.append(f"{field}: must map keys to strings")
            continue
        problems += _key_problems(field, value)
        if field == "data":
            problems += [
                f"data[{k!r}]: not base64" for k, v in value.items() if not _is_base64(v or "")
            ]
    secret_type = document.get("type")
    if secret_type is not None and not isinstance(secret_type, str):
        problems.append("type: must be a string")
    return problems


def _core_object_problems(document: Mapping[str, Any], fields: frozenset[str]) -> list[str]:
    problems = [f"{key}: unknown field" for key in document if key not in fields]
    if document.get("apiVersion") != "v1":
        problems.append(f"apiVersion {_shown(document.get('apiVersion'))}: use v1")
    immutable = document.get("immutable")
    if immutable is not None and not isinstance(immutable, bool):
        problems.append("immutable: must be true or false")
    return problems


def _key_problems(field: str, value: Mapping[str, Any]) -> list[str]:
    return [
        f"{field} key {key!r}: {problem}"
        for key in value
        if (problem := k8s_names.config_map_key_problem(str(key)))
    ]


def _string_map(value: Any) -> bool:
    """Keys and values are strings; a null value counts, Go reads it as "" (so does the server)."""
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    )


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True


def _shown(value: Any) -> str:
    return "(missing)" if value is None else repr(value)
