"""The pod agent's watch loop: binds pending pods to the node, runs each bound pod through a
``PodRuntime`` and finishes deleted ones; after a restart it adopts (fails) what it had started."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from ..kubeapi import API_ERRORS, JSON, ApiError, binding, now_rfc3339, pod_path
from .container import process_start_time
from .context import NodeContext, delete_pod_now
from .logs import LogSource
from .runtime import PodRuntime

log = logging.getLogger("testbed.podagent")

WATCH_SECONDS = 60  # each watch ends after this; the agent then relists (a resync)
MAX_BACKOFF_SECONDS = 10.0
TERMINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_SCHEDULER = "default-scheduler"
WATCH_RETRY_ERRORS: tuple[type[BaseException], ...] = (ValueError, *API_ERRORS)


def _looks_started(pod: JSON) -> bool:
    status = pod.get("status") or {}
    if status.get("startTime"):
        return True
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return any(
        "running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
        for s in statuses
    )


def kill_leftovers(pod_dir: Path) -> None:
    """Kill the process groups a previous agent started for this pod, if still alive."""
    try:
        records = json.loads((pod_dir / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for record in records.values():
        if not record:
            continue
        pid, started = int(record[0]), record[1]
        if started and process_start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _adopted_container_status(status: JSON, message: str) -> JSON:
    state = status.get("state") or {}
    if "terminated" in state:
        return status
    started = (state.get("running") or {}).get("startedAt") or now_rfc3339()
    terminated = {
        "exitCode": 137,
        "reason": "AgentRestarted",
        "message": message,
        "startedAt": started,
        "finishedAt": now_rfc3339(),
    }
    return {**status, "ready": False, "started": False, "state": {"terminated": terminated}}


def adopted_status(pod: JSON) -> JSON:
    """Terminal status for a pod whose processes a previous agent run lost."""
    message = "the testbed pod agent restarted; this pod's processes are gone"
    old = pod.get("status") or {}
    now = now_rfc3339()
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": "PodCompleted",
            "message": None,
            "lastTransitionTime": now,
        }
        for kind in ("Ready", "ContainersReady")
    ]
    status: JSON = {
        "phase": "Failed",
        "reason": "AgentRestarted",
        "message": message,
        "conditions": conditions,
    }
    for key, spec_key in (
        ("initContainerStatuses", "initContainers"),
        ("containerStatuses", "containers"),
    ):
        by_name = {s["name"]: s for s in old.get(key) or []}
        specs = pod["spec"].get(spec_key) or []
        if specs:
            status[key] = [
                _adopted_container_status(
                    by_name.get(c["name"])
                    or {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                    },
                    message,
                )
                for c in specs
            ]
    return status


class PodAgent:
    """Watches pods: binds the unbound, runs the bound, finishes the deleted."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.runtimes: dict[str, PodRuntime] = {}
        self.uids: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid, pods bound here
        self.stop = threading.Event()

    # ---------------------------------------------------------------- watch loop

    def run(self, ready: threading.Event | None = None) -> None:
        """List, then watch; on any trouble (410, apiserver restart, ...) back off and relist."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                version = self.relist()
                if ready is not None:
                    ready.set()
                self.watch(version)
                backoff = 1.0
                continue
            except WATCH_RETRY_ERRORS as error:
                log.warning("pod watch: %s; retrying in %.0f s", error, backoff)
            except Exception:
                log.exception("pod watch failed; retrying in %.0f s", backoff)
            self.stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def relist(self) -> str:
        listing = self.ctx.api.get("/api/v1/pods")
        seen = set()
        for pod in listing.get("items") or []:
            seen.add(pod["metadata"]["uid"])
            self.observe(pod)
        for uid in [uid for uid in self.runtimes if uid not in seen]:
            self.forget(uid)
        return str(listing["metadata"]["resourceVersion"])

    def watch(self, version: str) -> None:
        for event in self.ctx.api.watch("/api/v1/pods", version, WATCH_SECONDS):
            if self.stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    log.info("pod watch expired (410); relisting")
                    return
                raise ValueError(f"watch error: {obj.get('message')}")
            if kind == "DELETED":
                self.forget(obj["metadata"]["uid"])
            elif kind in ("ADDED", "MODIFIED"):
                self.observe(obj)

    # ---------------------------------------------------------------- events

    def observe(self, pod: JSON) -> None:
        try:
            node = pod["spec"].get("nodeName")
            if not node:
                self._observe_unbound(pod)
            elif node == self.ctx.node_name:
                self._observe_bound(pod)
        except API_ERRORS as error:
            meta = pod["metadata"]
            log.warning(
                "pod %s/%s: %s (retried on the next relist)", meta["namespace"], meta["name"], error
            )
        except Exception:
            meta = pod.get("metadata") or {}
            log.exception("pod %s/%s: unexpected error", meta.get("namespace"), meta.get("name"))

    def _observe_unbound(self, pod: JSON) -> None:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            return
        if meta.get("deletionTimestamp"):
            # The apiserver deletes unscheduled pods at once unless finalizers
            # hold them; a terminal phase lets their controllers let go.
            self._patch_status(
                pod, {"phase": "Failed", "reason": "Deleted", "message": "deleted before binding"}
            )
            return
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return
        if spec.get("schedulingGates"):
            self._mark_gated(pod)
            return
        self._bind(pod)

    def _observe_bound(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        self.uids[(meta["namespace"], meta["name"])] = uid
        runtime = self.runtimes.get(uid)
        if runtime is not None:
            runtime.update(pod)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            if meta.get("deletionTimestamp"):
                delete_pod_now(self.ctx.api, pod)
            return
        if _looks_started(pod):
            self._adopt(pod)
            return
        runtime = PodRuntime(self.ctx, pod)
        self.runtimes[uid] = runtime
        log.info("pod %s/%s: starting", meta["namespace"], meta["name"])
        runtime.start()

    def forget(self, uid: str) -> None:
        """The pod object is gone."""
        for key in [key for key, value in self.uids.items() if value == uid]:
            del self.uids[key]
        runtime = self.runtimes.pop(uid, None)
        if runtime is not None:
            runtime.remove()
        else:
            shutil.rmtree(self.ctx.pod_dir(uid), ignore_errors=True)

    def _patch_status(self, pod: JSON, status: JSON) -> None:
        meta = pod["metadata"]
        body = {"metadata": {"uid": meta["uid"]}, "status": status}
        try:
            self.ctx.api.patch(pod_path(meta["namespace"], meta["name"], "status"), body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def _mark_gated(self, pod: JSON) -> None:
        """What kube-scheduler reports for a gated pod: PodScheduled=False, SchedulingGated."""
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(
            c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
            for c in conditions
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastTransitionTime": now_rfc3339(),
        }
        self._patch_status(pod, {"conditions": [condition]})

    def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        body = binding(pod, self.ctx.node_name)
        try:
            self.ctx.api.post(pod_path(meta["namespace"], meta["name"], "binding"), body)
        except ApiError as error:
            if error.status in (404, 409):
                return
            raise
        log.info("pod %s/%s: bound to %s", meta["namespace"], meta["name"], self.ctx.node_name)

    def _adopt(self, pod: JSON) -> None:
        meta = pod["metadata"]
        log.warning(
            "pod %s/%s was started by an earlier agent run: marking it Failed",
            meta["namespace"],
            meta["name"],
        )
        kill_leftovers(self.ctx.pod_dir(meta["uid"]))
        self._patch_status(pod, adopted_status(pod))
        if meta.get("deletionTimestamp"):
            delete_pod_now(self.ctx.api, pod)

    # ---------------------------------------------------------------- logs and shutdown

    def log_source(self, namespace: str, name: str, container: str) -> LogSource | None:
        uid = self.uids.get((namespace, name))
        if uid is None:
            return None
        runtime = self.runtimes.get(uid)
        if runtime is not None:
            return runtime.log_source(container)
        path = self.ctx.pod_dir(uid) / "logs" / f"{container}.log"
        return LogSource(path, lambda: False) if path.exists() else None

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        runtimes = list(self.runtimes.values())
        for runtime in runtimes:
            runtime.shutdown()
        deadline = time.monotonic() + timeout
        for runtime in runtimes:
            runtime.done.wait(max(0.0, deadline - time.monotonic()))
