"""The database URL the operator itself connects with, read from the spec's Secrets.

The operator reads the version table after a run and for drift checks, and keys per-database
serialization on the URL's host, port and database. It composes the URL the same way a pod
does (:mod:`lockstep.db_connection`): from one Secret key, or from the split keys of
spec.database.connection; with spec.database.tls, the certificate files are written once
into a private directory (mode 0700, files 0600) and the driver gets their paths, as in the pod.
The URL lives in memory only; no message here ever quotes a value read from a Secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from lockstep import db_connection, kube
from lockstep.controller.cluster import KubeApi
from lockstep.model import Spec


@runtime_checkable
class SecretSource(Protocol):
    """Where Secret values come from: a GET each (`ApiSecrets`) or the watch (`inputs`)."""

    async def value(self, namespace: str, name: str, key: str) -> str: ...


class ApiSecrets:
    """One GET per value."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def value(self, namespace: str, name: str, key: str) -> str:
        return await asyncio.to_thread(self.api.read_secret_value, namespace, name, key)


class MissingKey(kube.NotFoundError):
    """A Secret or key of the spec is missing; `field` names the spec field that points at it."""

    def __init__(self, error: kube.NotFoundError, field: str) -> None:
        super().__init__(str(error))
        self.field = field


async def read_url(api: KubeApi | SecretSource, namespace: str, spec: Spec) -> str:
    """The database URL of ``spec``; MissingKey names the field of a missing Secret key.

    ``api``: a SecretSource, or a KubeApi to read each value with a GET.
    """
    if spec.url_secret is not None:
        ref = spec.url_secret
        url = await _read(api, namespace, ref.name, ref.key, "spec.database.urlSecretRef")
        return db_connection.with_parameters(url, await _parameters(api, namespace, spec))
    assert spec.connection is not None, "parse_spec requires urlSecretRef or connection"
    values: dict[str, str] = {}
    for name, part in spec.connection.parts():
        if part.secret is None:
            values[name] = part.value or ""
        else:
            field = f"spec.database.connection.{name}"
            values[name] = await _read(api, namespace, part.secret.name, part.secret.key, field)
    return db_connection.compose_url(
        engine=spec.engine,
        host=values["host"],
        database=values["database"],
        username=values.get("username"),
        password=values.get("password"),
        port=values.get("port"),
        query=await _parameters(api, namespace, spec),
    )


def source_of(spec: Spec) -> str:
    """Where the URL comes from, for messages: Secret and key names only."""
    if spec.url_secret is not None:
        return f"the URL in Secret {spec.url_secret.name} (key {spec.url_secret.key})"
    return "the URL composed from spec.database.connection"


async def _read(
    api: KubeApi | SecretSource, namespace: str, name: str, key: str, field: str
) -> str:
    source = api if isinstance(api, SecretSource) else ApiSecrets(api)
    try:
        return await source.value(namespace, name, key)
    except kube.NotFoundError as error:
        raise MissingKey(error, field) from None


async def _parameters(api: KubeApi | SecretSource, namespace: str, spec: Spec) -> dict[str, str]:
    """The pod's driver parameters, with the TLS files' paths on this operator's disk."""
    params = db_connection.parameters(spec.connection, spec.engine, spec.tls)
    if spec.tls is None:
        return params
    local = await _tls_files(api, namespace, spec)
    return {k: local.get(v, v) for k, v in params.items()}


async def _tls_files(api: KubeApi | SecretSource, namespace: str, spec: Spec) -> dict[str, str]:
    """Pod path → operator path of each TLS file, written once per content (0600)."""
    assert spec.tls is not None
    contents: dict[str, str] = {}
    for key, file_name in spec.tls.files():
        field = "spec.database.tls"
        contents[file_name] = await _read(api, namespace, spec.tls.secret_name, key, field)
    digest = hashlib.sha256(repr(sorted(contents.items())).encode()).hexdigest()[:16]
    directory = _private_dir() / digest
    directory.mkdir(mode=0o700, exist_ok=True)
    paths = {}
    for file_name, text in contents.items():
        target = directory / file_name
        if not target.exists():
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as output:
                output.write(text)
        paths[f"{db_connection.TLS_DIR}/{file_name}"] = str(target)
    return paths


def _private_dir() -> Path:
    directory = Path(tempfile.gettempdir()) / f"lockstep-tls-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
        raise PermissionError(f"{directory} is not private to this user: remove it")
    return directory
