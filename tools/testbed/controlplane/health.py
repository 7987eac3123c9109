"""Is the local control plane up? Plain HTTPS requests to the API server and etcd (no client
library), and waiting until a check holds or a component died."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .components import is_alive, log_tail
from .state import STARTUP_TIMEOUT, Cluster, ClusterError

# --- talking to the API server ---------------------------------------------


def api_get(cluster: Cluster, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``path`` as the admin; return (HTTP status, body); status 0 if unreachable."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(  # noqa: S310 - https to our own server
        cluster.server + path, headers={"Authorization": f"Bearer {cluster.admin_token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def dead_components(cluster: Cluster) -> list[str]:
    return [name for name, pid in cluster.pids.items() if not is_alive(pid, name)]


def wait_until(cluster: Cluster, what: str, check: Callable[[], bool]) -> None:
    """Poll ``check`` until true; fail early if a component exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not check():
        dead = dead_components(cluster)
        if dead:
            tails = "\n".join(f"--- {n} ---\n{log_tail(cluster.layout, n)}" for n in dead)
            raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}:\n{tails}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {STARTUP_TIMEOUT:.0f} s waiting for {what}")
        time.sleep(0.2)


def etcd_healthy(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.load(response).get("health") == "true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def is_ready(cluster: Cluster) -> bool:
    return not dead_components(cluster) and api_get(cluster, "/readyz")[0] == 200


def api_object_exists(cluster: Cluster, path: str) -> bool:
    return api_get(cluster, path)[0] == 200
