"""What can go wrong in `kubectl lockstep`, each as one line a person can act on.

Pure: the client module raises these (translated from the Kubernetes client's exceptions), the
commands raise them for refusals, and the entry point prints `error: <message>` and exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence

RESOURCE = "databasemigrations.lockstep.dev"


class PluginError(Exception):
    """Any failure of a command; `str()` is the whole message (one line, no traceback)."""


class ConfigError(PluginError):
    """The kubeconfig is missing or unusable."""


class ContextNotFoundError(ConfigError):
    def __init__(self, context: str, kubeconfig: str, contexts: Sequence[str]) -> None:
        known = ", ".join(sorted(contexts)) or "(none)"
        super().__init__(f"context {context!r} not found in {kubeconfig}; contexts: {known}")


class UnreachableError(PluginError):
    def __init__(self, server: str, cause: str) -> None:
        super().__init__(
            f"cannot reach the Kubernetes API server at {server} ({cause}): check the "
            "kubeconfig's cluster, your network or VPN, and that the cluster is running"
        )


class NotFoundError(PluginError):
    def __init__(self, kind: str, name: str, namespace: str) -> None:
        self.kind, self.name, self.namespace = kind, name, namespace
        hint = "; list them with: kubectl lockstep status -A" if kind == "databasemigration" else ""
        super().__init__(f"{kind} {name!r} not found in namespace {namespace!r}{hint}")


class CrdMissingError(PluginError):
    def __init__(self, server: str) -> None:
        super().__init__(
            f"the API server at {server} does not serve {RESOURCE}: the Lockstep CRD is not "
            "installed in this cluster (kubectl apply -f crds/, or install the Helm chart)"
        )


class ForbiddenError(PluginError):
    def __init__(self, verb: str, resource: str, namespace: str | None, user: str | None) -> None:
        where = f"in namespace {namespace!r}" if namespace else "in all namespaces"
        grant = f"a Role in {namespace!r}" if namespace else "a ClusterRole"
        who = f" (you are {user})" if user else ""
        super().__init__(
            f"you may not {verb} {resource} {where} (RBAC): ask for {grant} that allows "
            f"{verb!r} on {resource}{who}"
        )


class ApiError(PluginError):
    """Any other answer of the API server (HTTP status and its message)."""


class RefusedError(PluginError):
    """The command chose not to act (wrong state, declined prompt, nothing to do safely)."""
