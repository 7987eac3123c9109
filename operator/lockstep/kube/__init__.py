"""The only package that talks to the Kubernetes API directly (through the official client).

Functions here are synchronous and small; the reconciler runs them in worker threads.
Errors are translated into Lockstep's own exceptions so callers never import the client.

Callers use the names re-exported here (`kube.read_lease`, `kube.NotFoundError`); the
submodules group them by concern:

- `api`: one raw request through the client's ApiClient (`lockstep.kube_wire`, which the
  kubectl plugin shares; no generated API group class), the errors, plain JSON bodies;
- `connection`: the kubeconfig or service account, the default namespace, Kopf's credentials;
- `objects`: what the reconciler, the gate and `lockstep wait` read and write;
- `leases`: the leader election's Lease;
- `webhook_config`: the webhook's TLS Secret and its MutatingWebhookConfiguration.

A test that replaces a function here (`monkeypatch.setattr(kube, ...)`) changes what callers
outside the package see; calls between submodules (`webhook_config` reading a Secret through
`objects.read_secret_raw`) go through the submodule, so patch that one for them.
"""

from __future__ import annotations

from lockstep.kube.api import ConflictError, ExpiredError, KubeError, NotFoundError
from lockstep.kube.connection import (
    SERVICE_ACCOUNT_NAMESPACE,
    Credentials,
    NoClusterConfig,
    credentials,
    default_namespace,
    load_config,
)
from lockstep.kube.leases import read_lease, write_lease
from lockstep.kube.objects import (
    create_job,
    delete_job,
    get_migration,
    job_pod,
    label_job,
    list_page,
    patch_migration_status,
    read_config_map_data,
    read_log_tail,
    read_secret_raw,
    read_secret_value,
    read_workload,
    remove_scheduling_gate,
    serves_streaming_lists,
)
from lockstep.kube.webhook_config import (
    apply_mutating_webhook,
    inject_webhook_ca,
    read_mutating_webhook,
    read_secret_data,
    write_tls_secret,
)

__all__ = [
    "SERVICE_ACCOUNT_NAMESPACE",
    "ConflictError",
    "Credentials",
    "ExpiredError",
    "KubeError",
    "NoClusterConfig",
    "NotFoundError",
    "apply_mutating_webhook",
    "create_job",
    "credentials",
    "default_namespace",
    "delete_job",
    "get_migration",
    "inject_webhook_ca",
    "job_pod",
    "label_job",
    "list_page",
    "load_config",
    "patch_migration_status",
    "read_config_map_data",
    "read_lease",
    "read_log_tail",
    "read_mutating_webhook",
    "read_secret_data",
    "read_secret_raw",
    "read_secret_value",
    "read_workload",
    "remove_scheduling_gate",
    "serves_streaming_lists",
    "write_lease",
    "write_tls_secret",
]
