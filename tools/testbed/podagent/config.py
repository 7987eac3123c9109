"""Container environment for the testbed pod agent, and the values and objects volumes share.

It follows the kubelet's rules closely enough for tests: env from ``value``
(with ``$(VAR)`` expansion), ``secretKeyRef``, ``configMapKeyRef``,
``fieldRef``, ``resourceFieldRef`` and ``envFrom``. The same field and
resource values, ConfigMap and Secret data feed downward API and projected
volumes (see ``volumes``).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..kubeapi import JSON, ApiError, Endpoint, KubeAPI
from .images import ImageProfile

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ALWAYS_READ_ONLY = frozenset({"configMap", "secret", "projected", "downwardAPI"})
_EXPANSION = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_QUANTITY_SUFFIXES = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9,
    "T": 1e12, "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30,
    "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


class ConfigError(Exception):
    """The container's configuration cannot be built (yet): CreateContainerConfigError."""


class VolumeError(Exception):
    """A volume cannot be set up (yet): the pod stays in ContainerCreating."""


@dataclass(frozen=True)
class PodFacts:
    """What the downward API needs that the pod object may not show yet."""

    pod_ip: str
    host_ip: str
    node_name: str
    node_cpu: int
    node_memory: int


@dataclass(frozen=True)
class Volume:
    path: Path
    kind: str

    @property
    def read_only(self) -> bool:
        return self.kind in ALWAYS_READ_ONLY


# ---------------------------------------------------------------- values


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay as they are, ``$$`` is ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _EXPANSION.sub(replace, text)


def parse_quantity(text: str) -> float:
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _QUANTITY_SUFFIXES:
        raise ConfigError(f"cannot parse quantity {text!r}")
    return float(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2)]


def _format_map(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={json.dumps(values[key])}\n" for key in sorted(values))


def field_value(pod: JSON, field_path: str, facts: PodFacts) -> str:
    """The value of a downward API ``fieldRef``."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or facts.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if field_path in simple:
        return str(simple[field_path])
    if field_path in ("metadata.labels", "metadata.annotations"):
        return _format_map(meta.get(field_path.split(".")[1]) or {})
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {field_path!r}")


def resource_value(pod: JSON, container_name: str, ref: JSON, facts: PodFacts) -> str:
    """The value of a downward API ``resourceFieldRef`` (limits default to the node's capacity)."""
    name = ref.get("containerName") or container_name
    containers = [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
    container = next((c for c in containers if c["name"] == name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef: no container named {name!r}")
    kind, _, resource = str(ref["resource"]).partition(".")
    quantity = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if quantity is not None:
        value = parse_quantity(str(quantity))
    elif kind == "limits":
        value = float(facts.node_cpu if resource == "cpu" else facts.node_memory)
    else:
        value = 0.0
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(value / divisor))


# ---------------------------------------------------------------- objects


def _get(api: KubeAPI, kind: str, namespace: str, name: str) -> JSON | None:
    try:
        return api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
    except ApiError as error:
        if error.status == 404:
            return None
        raise


def _configmap_data(api: KubeAPI, namespace: str, name: str) -> dict[str, bytes] | None:
    obj = _get(api, "configmaps", namespace, name)
    if obj is None and name == ROOT_CA_CONFIGMAP and api.ca_file:
        # Normally published by kube-controller-manager; the kubeconfig holds the same CA.
        return {"ca.crt": Path(api.ca_file).read_bytes()}
    if obj is None:
        return None
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _secret_data(api: KubeAPI, namespace: str, name: str) -> dict[str, bytes] | None:
    obj = _get(api, "secrets", namespace, name)
    if obj is None:
        return None
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return data


def source_data(
    api: KubeAPI, namespace: str, ref: JSON, is_secret: bool
) -> dict[str, bytes] | None:
    name = ref.get("name") or ref.get("secretName") or ""
    if is_secret:
        return _secret_data(api, namespace, name)
    return _configmap_data(api, namespace, name)


# ---------------------------------------------------------------- env


def _key_ref(api: KubeAPI, namespace: str, ref: JSON, is_secret: bool) -> str | None:
    kind = "secret" if is_secret else "configmap"
    data = source_data(api, namespace, ref, is_secret)
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref.get('name')}")
    return data[ref["key"]].decode("utf-8", "replace")


def _env_from(api: KubeAPI, namespace: str, source: JSON) -> dict[str, str]:
    is_secret = "secretRef" in source
    ref = source.get("secretRef") or source.get("configMapRef") or {}
    data = source_data(api, namespace, ref, is_secret)
    if data is None:
        if ref.get("optional"):
            return {}
        kind = "secret" if is_secret else "configmap"
        raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    prefix = source.get("prefix") or ""
    return {prefix + key: value.decode("utf-8", "replace") for key, value in data.items()}


def _env_value(
    api: KubeAPI, pod: JSON, container: JSON, item: JSON, env: dict[str, str], facts: PodFacts
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "valueFrom" not in item:
        return expand(str(item.get("value") or ""), env)
    source = item["valueFrom"]
    if "secretKeyRef" in source:
        return _key_ref(api, namespace, source["secretKeyRef"], is_secret=True)
    if "configMapKeyRef" in source:
        return _key_ref(api, namespace, source["configMapKeyRef"], is_secret=False)
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], facts)
    if "resourceFieldRef" in source:
        return resource_value(pod, container["name"], source["resourceFieldRef"], facts)
    raise ConfigError(f"env {item['name']}: unsupported valueFrom {sorted(source)}")


def container_env(
    api: KubeAPI,
    pod: JSON,
    container: JSON,
    image: ImageProfile,
    facts: PodFacts,
    apiserver: Endpoint,
) -> dict[str, str]:
    """The process environment: image env, service env, envFrom, then env (later wins)."""
    hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
    env = {"HOME": "/root", **image.env, "HOSTNAME": hostname}
    env.update(
        {
            "KUBERNETES_SERVICE_HOST": apiserver.host,
            "KUBERNETES_SERVICE_PORT": str(apiserver.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(apiserver.port),
            "KUBERNETES_PORT": f"tcp://{apiserver.host}:{apiserver.port}",
        }
    )
    for source in container.get("envFrom") or []:
        env.update(_env_from(api, pod["metadata"]["namespace"], source))
    for item in container.get("env") or []:
        value = _env_value(api, pod, container, item, env, facts)
        if value is not None:
            env[item["name"]] = value
    return env
