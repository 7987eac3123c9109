"""What the operator's first Kubernetes requests cost its memory now that they bypass the
client's generated API group classes (`lockstep.kube.api.request`); the counterpart of
bench/client_first_calls.py, which measures those classes.

    .venv/bin/python bench/raw_first_calls.py

No cluster: each request goes to a closed local port and fails at once, after everything a
first request loads or builds. Printed: RSS and pydantic FieldInfo objects after importing the
operator's modules (the floor), then after the first request of each kind the operator sends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client_first_calls import measure_steps


def main() -> None:
    from kubernetes import client

    import lockstep.controller.handlers  # noqa: F401  (the import-only floor's modules)
    from lockstep.kube import api

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens: each request fails at once
    configuration.retries = 0
    client.Configuration.set_default(configuration)
    where = {"namespace": "ns", "name": "n"}
    body: Any = {"metadata": {"name": "x"}}
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "GET Secret",
            lambda: api.request(
                "GET", "/api/v1/namespaces/{namespace}/secrets/{name}", path_params=where
            ),
        ),
        (
            "POST Job",
            lambda: api.request(
                "POST", "/apis/batch/v1/namespaces/{namespace}/jobs", path_params=where, body=body
            ),
        ),
        (
            "PATCH status (merge)",
            lambda: api.request(
                "PATCH",
                "/apis/g/v/namespaces/{namespace}/p/{name}/status",
                path_params=where,
                body={},
                content_type=api.MERGE_PATCH,
            ),
        ),
        (
            "PUT Lease",
            lambda: api.request(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
                path_params=where,
                body=body,
            ),
        ),
        (
            "PATCH webhook (JSON Patch)",
            lambda: api.request(
                "PATCH",
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}",
                path_params=where,
                body=[],
                content_type=api.JSON_PATCH,
            ),
        ),
        (
            "GET Deployment",
            lambda: api.request(
                "GET", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", path_params=where
            ),
        ),
        (
            "watch pods",
            lambda: api.request("GET", "/api/v1/pods", query={"watch": True, "timeoutSeconds": 1}),
        ),
    ]
    measure_steps("after (first request)", steps)
    loaded = sorted(m for m in sys.modules if m.startswith("kubernetes.client.api."))
    print(f"generated API group modules loaded: {loaded or 'none'}")


if __name__ == "__main__":
    main()
