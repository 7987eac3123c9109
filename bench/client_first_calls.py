"""What the Kubernetes client's first calls cost the operator's memory (issue 21's 250 MB goal).

    .venv/bin/python bench/client_first_calls.py

The client (kubernetes 37) is generated with pydantic: every API method is wrapped in
`validate_call`, which builds validators for its arguments' models, nested models included, and
keeps them for the life of the process. A Job's body alone is a few
hundred models (pod spec, containers, volumes, ...), even when the caller passes plain JSON and
asks for no model back (`_preload_content=False`). No cluster: each call goes to a closed local
port and fails after building its validators, which is all this measures. The API group modules
build them as they are imported (each decorated method at once: CoreV1Api has hundreds), so the
cost comes with each group's first use. Printed: RSS and pydantic FieldInfo objects after
importing the operator's modules (the floor: what the fleet bench's import-only process holds),
then after the first use of each API group the operator uses.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import time
from collections.abc import Callable
from typing import Any

from benchlib import common


def rss_mib() -> float:
    return common.mib(common.sample_process(os.getpid()).rss_bytes)


def field_infos() -> int:
    kinds = collections.Counter(type(o).__name__ for o in gc.get_objects())
    return kinds["FieldInfo"]


def measure_steps(title: str, steps: list[tuple[str, Callable[[], Any]]]) -> None:
    """Run each step once (against a closed port: the error is expected) and print RSS, its
    growth over the floor, the FieldInfo count and the seconds it took."""
    floor = rss_mib()
    header = ("RSS MiB", "+MiB", "FieldInfo", "seconds")
    print(f"{title:40} " + " ".join(f"{h:>9}" for h in header))
    print(f"{'importing the operator (floor)':40} {floor:9.1f} {0:9.1f} {field_infos():9d}")
    for name, step in steps:
        started = time.perf_counter()
        with contextlib.suppress(Exception):  # the closed port: expected
            step()
        took = time.perf_counter() - started
        now = rss_mib()
        print(f"{name:40} {now:9.1f} {now - floor:9.1f} {field_infos():9d} {took:9.3f}")


def main() -> None:
    from kubernetes import client

    import lockstep.controller.handlers  # noqa: F401  (the import-only floor's modules)

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens: each call fails at once
    configuration.retries = 0
    api = client.ApiClient(configuration)
    raw: dict[str, Any] = {"_preload_content": False}
    body: Any = {"metadata": {"name": "x"}}
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "CoreV1Api: read_namespaced_secret",
            lambda: client.CoreV1Api(api).read_namespaced_secret("n", "ns", **raw),
        ),
        (
            "BatchV1Api: create_namespaced_job",
            lambda: client.BatchV1Api(api).create_namespaced_job("ns", body, **raw),
        ),
        (
            "CustomObjectsApi: patch status",
            lambda: client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                "g", "v", "ns", "p", "n", {}, **raw
            ),
        ),
        (
            "CoordinationV1Api: replace lease",
            lambda: client.CoordinationV1Api(api).replace_namespaced_lease("n", "ns", body, **raw),
        ),
        (
            "AdmissionregistrationV1Api: patch",
            lambda: client.AdmissionregistrationV1Api(api).patch_mutating_webhook_configuration(
                "n", {}, **raw
            ),
        ),
        ("AppsV1Api: constructed", lambda: client.AppsV1Api(api)),
    ]
    measure_steps("after (API group: first use)", steps)


if __name__ == "__main__":
    main()
