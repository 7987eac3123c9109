"""Where the API server is: the kubeconfig or the pod's service account, and the namespace."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class NoClusterConfig(RuntimeError):  # noqa: N818 - reads better at the raise site
    """Neither in a pod with a service account nor given a usable kubeconfig."""


def default_namespace() -> str:
    """$POD_NAMESPACE, the pod's own namespace, else `default` (the Lease's, `lockstep wait`'s)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def load_config(kubeconfig: str | None = None) -> None:
    """In-cluster config inside a pod, else the kubeconfig (explicit path, $KUBECONFIG, ~/.kube).

    Raises :class:`NoClusterConfig` saying what was tried: a container started outside a pod,
    or a pod without its service account token, would otherwise end in the client's traceback.
    """
    in_cluster = "not in a pod"
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return
        except config.ConfigException as error:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                in_cluster = f"in a pod, but {error}"
    try:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise NoClusterConfig(
            f"cannot reach a Kubernetes API server: {in_cluster} (no service account token), "
            f"and the kubeconfig {where} is unusable ({error}); run it in a pod with a service "
            "account, or give --kubeconfig or $KUBECONFIG"
        ) from None


@dataclass(frozen=True)
class Credentials:
    """How to reach the API server, as loaded by `load_config` (for Kopf's own client)."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    scheme: str | None
    certificate_path: str | None
    private_key_path: str | None


def credentials() -> Credentials:
    """The connection that `load_config` set up: one source of truth for both clients."""
    configuration = client.Configuration.get_default_copy()
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, "".join(parts) or None)
    return Credentials(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        scheme=scheme,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
