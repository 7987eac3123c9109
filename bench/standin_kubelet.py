"""A stand-in kubelet for the scale benchmark: finishes Lockstep's Job pods without running them.

    python bench/standin_kubelet.py --kubeconfig K --message-file M [--workers 8]

On 2 cores, 1,000 real migration pods (a lock sidecar, its startup probe every second and a
migrate container, each a Python process under the test bed's pod agent) would measure the pod
agent, not the operator. This stand-in watches pods labelled `app.kubernetes.io/managed-by=
lockstep`, binds each new one to its own Node and reports it Succeeded at once, with the status a
kubelet reports for a finished migration pod: the lock sidecar and the migrate container
terminated with exit code 0, and the migrate container's termination message set to the runner's
JSON report (`--message-file`: the message a real run of the same SQL files wrote, taken from
the latency stage). The Job controller then completes the Job as usual, and the operator reads
the pod and the report as it would on a real node.

Used only while the test bed's pod agent is stopped. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib import pod_status
from benchlib.watching import run_watches

from testbed.kubeapi import (
    API_ERRORS,
    ApiError,
    KubeAPI,
    binding,
    now_rfc3339,
    pod_path,
)

NODE = "lockstep-bench-standin"
SELECTOR = "app.kubernetes.io/managed-by=lockstep"
TERMINAL = ("Succeeded", "Failed")


def finished_status(pod: Mapping[str, Any], message: str, started: str) -> dict[str, Any]:
    """What a kubelet reports for a migration pod whose containers all exited 0."""
    spec = pod["spec"]
    ended = now_rfc3339()

    def terminated(container: Mapping[str, Any], text: str | None) -> dict[str, Any]:
        return pod_status.terminated(container["name"], container["image"], started, ended, text)

    def condition(kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
        found = {"type": kind, "status": status, "lastTransitionTime": ended}
        return {**found, "reason": reason} if reason else found

    return {
        "phase": "Succeeded",
        "conditions": [
            condition("PodReadyToStartContainers", "False"),
            condition("Initialized", "True"),
            condition("ContainersReady", "False", "PodCompleted"),
            condition("Ready", "False", "PodCompleted"),
            condition("PodScheduled", "True"),
        ],
        "hostIP": "127.0.0.1",
        "startTime": started,
        "initContainerStatuses": [terminated(c, None) for c in spec.get("initContainers") or []],
        "containerStatuses": [
            terminated(c, message if c["name"] == "migrate" else None) for c in spec["containers"]
        ],
        "qosClass": "Burstable",
    }


class StandIn:
    def __init__(self, kubeconfig: Path, message: str, workers: int, run_seconds: float) -> None:
        self.api = KubeAPI(kubeconfig, pool=workers + 4)
        self.message = message
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.run_seconds = run_seconds
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
        try:
            self.api.post("/api/v1/nodes", body)
        except ApiError as error:
            if error.status != 409:
                raise
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "bench stand-in",
                        "lastHeartbeatTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "10000"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "10000"},
            }
        }
        self.api.patch(f"/api/v1/nodes/{NODE}/status", status, patch_type="merge")

    def finish(self, pod: Mapping[str, Any]) -> None:
        metadata = pod["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        started = now_rfc3339()
        try:
            self.api.post(pod_path(namespace, name, "binding"), binding(pod, NODE))
            if self.run_seconds:
                time.sleep(self.run_seconds)
            body = {"status": finished_status(pod, self.message, started)}
            self.api.patch(pod_path(namespace, name, "status"), body, patch_type="merge")
        except API_ERRORS as error:
            print(f"stand-in: {namespace}/{name}: {error}", file=sys.stderr, flush=True)

    def observe(self, kind: str, pod: Mapping[str, Any]) -> None:
        metadata, spec = pod["metadata"], pod.get("spec") or {}
        uid = metadata["uid"]
        if kind == "DELETED":
            self.seen.discard(uid)
            return
        phase = (pod.get("status") or {}).get("phase")
        if uid in self.seen or spec.get("nodeName") or phase in TERMINAL:
            return
        if metadata.get("deletionTimestamp"):
            return
        self.seen.add(uid)
        self.pool.submit(self.finish, pod)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--message-file", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--run-seconds", type=float, default=0.0, help="pretend runs take this")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    stand_in = StandIn(
        args.kubeconfig, args.message_file.read_text().strip(), args.workers, args.run_seconds
    )
    signal.signal(signal.SIGTERM, lambda *_: stand_in.stop.set())
    stand_in.register_node()
    streams = [("/api/v1/pods", SELECTOR, stand_in.observe)]
    run_watches(stand_in.api, streams, stand_in.stop, "stand-in", args.ready_file)
    stand_in.pool.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
