"""Volumes of a pod on the testbed node, and the container mounts that use them.

Volumes of type configMap, secret, emptyDir, hostPath, downwardAPI and projected
(serviceAccountToken through the TokenRequest API, configMap, secret,
downwardAPI) are written to the pod directory once, before the first container
starts; later changes to their ConfigMaps and Secrets are not synced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..kubeapi import JSON, ApiError, KubeAPI
from .config import (
    ConfigError,
    PodFacts,
    Volume,
    VolumeError,
    expand,
    field_value,
    resource_value,
    source_data,
)


def _write(directory: Path, relative: str, data: bytes, mode: int) -> None:
    target = (directory / relative).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise VolumeError(f"path {relative!r} escapes its volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _write_keys(
    directory: Path, data: dict[str, bytes], spec: JSON, default_mode: int, what: str
) -> None:
    items = spec.get("items")
    if not items:
        for key, value in data.items():
            _write(directory, key, value, default_mode)
        return
    for item in items:
        if item["key"] not in data:
            if spec.get("optional"):
                continue
            raise VolumeError(f"{what}: no key {item['key']!r}")
        _write(directory, item["path"], data[item["key"]], int(item.get("mode") or default_mode))


def _keyed_volume(
    api: KubeAPI, pod: JSON, directory: Path, spec: JSON, is_secret: bool, default_mode: int
) -> None:
    namespace = pod["metadata"]["namespace"]
    name = spec.get("secretName") or spec.get("name") or ""
    what = f'{"secret" if is_secret else "configmap"} "{name}"'
    data = source_data(api, namespace, spec, is_secret)
    if data is None:
        if spec.get("optional"):
            return
        raise VolumeError(f"{what} not found")
    _write_keys(directory, data, spec, int(spec.get("defaultMode") or default_mode), what)


def _downward_items(
    pod: JSON, directory: Path, items: list[JSON], mode: int, facts: PodFacts
) -> None:
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], facts)
        else:
            container = item["resourceFieldRef"].get("containerName", "")
            value = resource_value(pod, container, item["resourceFieldRef"], facts)
        _write(directory, item["path"], value.encode(), int(item.get("mode") or mode))


def request_token(api: KubeAPI, pod: JSON, audience: str | None, seconds: int) -> str:
    """A service account token bound to the pod, from the TokenRequest API."""
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    try:
        return str(api.post(path, body)["status"]["token"])
    except ApiError as error:
        raise VolumeError(f"token for service account {account!r}: {error.message}") from error


def _projected(api: KubeAPI, pod: JSON, directory: Path, spec: JSON, facts: PodFacts) -> None:
    mode = int(spec.get("defaultMode") or 0o644)
    for source in spec.get("sources") or []:
        if "serviceAccountToken" in source:
            token_spec = source["serviceAccountToken"]
            seconds = int(token_spec.get("expirationSeconds") or 3600)
            token = request_token(api, pod, token_spec.get("audience"), seconds)
            _write(directory, token_spec["path"], token.encode(), mode)
        elif "configMap" in source:
            _keyed_volume(api, pod, directory, source["configMap"], False, mode)
        elif "secret" in source:
            _keyed_volume(api, pod, directory, source["secret"], True, mode)
        elif "downwardAPI" in source:
            _downward_items(pod, directory, source["downwardAPI"].get("items") or [], mode, facts)
        else:
            raise VolumeError(f"projected source {sorted(source)} is not supported by the testbed")


def _volume_kind(volume: JSON) -> str:
    kinds = [key for key in volume if key != "name"]
    return kinds[0] if kinds else "emptyDir"


def materialize_volume(
    api: KubeAPI, pod: JSON, root: Path, volume: JSON, facts: PodFacts
) -> Volume:
    """Write one volume's files under ``root`` and return where they are."""
    kind = _volume_kind(volume)
    spec = volume.get(kind) or {}
    directory = root / volume["name"]
    if kind == "hostPath":
        host = Path(spec["path"])
        if spec.get("type") in ("DirectoryOrCreate", None, "") and not host.exists():
            host.mkdir(parents=True, exist_ok=True)
        return Volume(host, kind)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "emptyDir":
        pass
    elif kind == "configMap":
        _keyed_volume(api, pod, directory, spec, False, 0o644)
    elif kind == "secret":
        _keyed_volume(api, pod, directory, spec, True, 0o644)
    elif kind == "downwardAPI":
        _downward_items(
            pod, directory, spec.get("items") or [], int(spec.get("defaultMode") or 0o644), facts
        )
    elif kind == "projected":
        _projected(api, pod, directory, spec, facts)
    else:
        raise VolumeError(
            f"volume {volume['name']!r}: type {kind!r} is not supported by the testbed"
        )
    return Volume(directory, kind)


def materialize_volumes(api: KubeAPI, pod: JSON, root: Path, facts: PodFacts) -> dict[str, Volume]:
    volumes: dict[str, Volume] = {}
    for volume in pod["spec"].get("volumes") or []:
        try:
            volumes[volume["name"]] = materialize_volume(api, pod, root, volume, facts)
        except (ConfigError, OSError) as error:
            raise VolumeError(f"volume {volume['name']!r}: {error}") from error
    return volumes


def container_mounts(
    container: JSON,
    volumes: dict[str, Volume],
    env: Mapping[str, str],
    termination_file: Path,
) -> list[dict[str, Any]]:
    """The launcher's mount list for one container (volumes plus its termination-log file)."""
    mounts: list[dict[str, Any]] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(f"volumeMount {mount['name']!r} names no volume of the pod")
        sub_path = mount.get("subPath") or expand(str(mount.get("subPathExpr") or ""), env)
        source = volume.path / sub_path if sub_path else volume.path
        if sub_path and not source.exists():
            source.mkdir(parents=True, exist_ok=True)
        mounts.append(
            {
                "source": str(source),
                "target": os.path.normpath(mount["mountPath"]),
                "readOnly": bool(mount.get("readOnly")) or volume.read_only,
            }
        )
    target = container.get("terminationMessagePath") or "/dev/termination-log"
    mounts.append({"source": str(termination_file), "target": target, "readOnly": False})
    return mounts
