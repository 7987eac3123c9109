"""The floor: the least any controller must do for a DatabaseMigration, with no logic at all.

    python bench/floor_client.py --kubeconfig K --template JOB.json [--workers 6]

Watches DatabaseMigrations labelled `bench.lockstep.dev/driver=floor` (all namespaces), the Jobs
it made and the app pods that wait for a migration (label `lockstep.dev/wait-for`). Then:

* a new DatabaseMigration: create its Job (a template made by the bench from Lockstep's own Job
  builder, with names filled in: no reads of the Secret or the ConfigMap, no planning) and patch
  the status once (Ready=False, Reconciling=True: JobRunning, observedGeneration);
* its Job completed: lift the scheduling gate of the pods that wait for it, then patch the
  status once (Ready=True).

No retries, no Events, no lock, no revision read, no cache beyond the pods that wait. The
requests go out from a pool of `--workers` threads (6: what `asyncio.to_thread` gives the
operator on this 2-core machine), the watches are raw streams. Prints nothing but errors; stops
on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib.watching import Handler, run_watches

from testbed.kubeapi import API_ERRORS, KubeAPI, now_rfc3339

GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "databasemigrations"
DRIVER_SELECTOR = "bench.lockstep.dev/driver=floor"
WAIT_FOR_LABEL = "lockstep.dev/wait-for"
GATE = "lockstep.dev/migration"
MIGRATION_LABEL = "lockstep.dev/migration"
GENERATION_ANNOTATION = "bench.lockstep.dev/generation"  # in the template: "__GENERATION__"


class Floor:
    def __init__(self, api: KubeAPI, template: str, workers: int) -> None:
        self.api = api
        self.template = template
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.gated: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, pod) -> pod
        self.seen_migrations: set[tuple[str, str]] = set()
        self.seen_jobs: set[tuple[str, str]] = set()
        self.stop = threading.Event()

    # ------------------------------------------------------------------ requests

    def call(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> None:
        try:
            self.api.request(method, path, body=body, content_type=content_type)
        except API_ERRORS as error:
            print(f"floor: {error}", file=sys.stderr, flush=True)

    def started(self, migration: Mapping[str, Any]) -> None:
        metadata, spec = migration["metadata"], migration["spec"]
        namespace, name = metadata["namespace"], metadata["name"]
        text = (
            self.template.replace("__NAME__", name)
            .replace("__NAMESPACE__", namespace)
            .replace("__UID__", metadata["uid"])
            .replace("__SECRET__", spec["database"]["urlSecretRef"]["name"])
            .replace("__KEY__", spec["database"]["urlSecretRef"]["key"])
            .replace("__CONFIGMAP__", spec["source"]["configMapRef"]["name"])
            .replace("__GENERATION__", str(metadata.get("generation", 1)))
        )
        job = json.loads(text)
        self.call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
        at = now_rfc3339()
        message = f"Job {job['metadata']['name']} is running"
        status = {
            "observedGeneration": metadata.get("generation", 1),
            "conditions": [
                condition("Ready", "False", "JobRunning", message, at),
                condition("Reconciling", "True", "JobRunning", message, at),
            ],
            "activeJob": {"name": job["metadata"]["name"], "startedAt": at, "attempt": 1},
        }
        self.patch_status(namespace, name, status)

    def finished(self, job: Mapping[str, Any]) -> None:
        metadata = job["metadata"]
        namespace, name = metadata["namespace"], metadata["labels"][MIGRATION_LABEL]
        for key, pod in list(self.gated.items()):
            waits_for = (pod["metadata"].get("labels") or {}).get(WAIT_FOR_LABEL)
            if key[0] == namespace and waits_for == name:
                self.gated.pop(key, None)
                gates = [g for g in pod["spec"].get("schedulingGates") or [] if g["name"] != GATE]
                patch = [{"op": "replace", "path": "/spec/schedulingGates", "value": gates}]
                path = f"/api/v1/namespaces/{namespace}/pods/{key[1]}"
                self.call("PATCH", path, patch, "application/json-patch+json")
        at = now_rfc3339()
        status = {
            "observedGeneration": int(metadata["annotations"][GENERATION_ANNOTATION]),
            "conditions": [
                condition("Ready", "True", "Succeeded", "applied the migrations", at),
            ],
            "activeJob": None,
            "lastRun": {"job": metadata["name"], "result": "Succeeded", "finishedAt": at},
        }
        self.patch_status(namespace, name, status)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        self.call("PATCH", path, {"status": dict(status)}, "application/merge-patch+json")

    # ------------------------------------------------------------------ watches

    def on_migration(self, kind: str, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        new = kind == "ADDED" and not (body.get("status") or {}).get("conditions")
        if new and key not in self.seen_migrations:
            self.seen_migrations.add(key)
            self.pool.submit(self.started, body)

    def on_job(self, kind: str, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        conditions = (body.get("status") or {}).get("conditions") or []
        complete = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
        if kind != "DELETED" and complete and key not in self.seen_jobs:
            self.seen_jobs.add(key)
            self.pool.submit(self.finished, body)

    def on_pod(self, kind: str, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        gates = (body.get("spec") or {}).get("schedulingGates") or []
        if kind != "DELETED" and any(g.get("name") == GATE for g in gates):
            self.gated[key] = body
        else:
            self.gated.pop(key, None)


def condition(kind: str, status: str, reason: str, message: str, at: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--template", type=Path, required=True, help="the Job template (JSON)")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--ready-file", type=Path, help="written once the watches are open")
    args = parser.parse_args(argv)
    api = KubeAPI(args.kubeconfig, pool=args.workers + 4)
    floor = Floor(api, args.template.read_text(), args.workers)
    signal.signal(signal.SIGTERM, lambda *_: floor.stop.set())
    streams: list[tuple[str, str, Handler]] = [
        ("/api/v1/pods", WAIT_FOR_LABEL, floor.on_pod),
        (f"/apis/{GROUP}/{VERSION}/{PLURAL}", DRIVER_SELECTOR, floor.on_migration),
        ("/apis/batch/v1/jobs", DRIVER_SELECTOR, floor.on_job),
    ]
    run_watches(api, streams, floor.stop, "floor", args.ready_file)
    floor.pool.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
