"""The pods/status a pod runtime reports: phase, conditions (with stable transition times) and
container statuses, patched to the API server only when they changed."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from ..kubeapi import JSON, TRANSPORT_ERRORS, ApiError, now_rfc3339, pod_path
from .container import Role

if TYPE_CHECKING:
    from .runtime import PodRuntime

log = logging.getLogger("testbed.podruntime")

RETRY_SECONDS = 2.0


def readiness_gates_ok(pod: JSON) -> bool:
    conditions = {
        c["type"]: c.get("status") for c in (pod.get("status") or {}).get("conditions") or []
    }
    gates = pod["spec"].get("readinessGates") or []
    return all(conditions.get(g["conditionType"]) == "True" for g in gates)


def phase(pod: PodRuntime) -> str:
    if pod.final_phase:
        return pod.final_phase
    # Like the kubelet: Running once a main container has run (or runs).
    return "Running" if any(run.ever_started for run in pod.mains) else "Pending"


class StatusReport:
    """The status one pod runtime reports, the transition times of its conditions, and what
    the API server has of it."""

    def __init__(self) -> None:
        self._transitions: dict[str, tuple[str, str]] = {}
        self._pushed = ""
        self._last_push_error = 0.0

    def condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, now_rfc3339())
        # None deletes a stale reason/message in the strategic merge patch.
        return {
            "type": kind,
            "status": status,
            "lastTransitionTime": self._transitions[kind][1],
            "reason": reason or None,
            "message": message or None,
        }

    def conditions(self, pod: PodRuntime) -> list[JSON]:
        terminal = bool(pod.final_phase)
        pending_init = [
            run.name for run in pod.inits if not (run.completed or (run.running and run.started))
        ]
        checked = [run for run in pod.containers() if run.role is not Role.INIT]
        unready = [run.name for run in checked if not (run.running and run.ready)]
        if terminal:
            ready_args: tuple[bool, str, str] = (False, "PodCompleted", "")
        elif unready:
            ready_args = (
                False,
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        else:
            ready_args = (True, "", "")
        gates_ok = readiness_gates_ok(pod.pod)
        pod_ready = (
            ready_args
            if not ready_args[0] or gates_ok
            else (False, "ReadinessGatesNotReady", "the status of pod readiness gates is not True")
        )
        init_message = f"containers with incomplete status: [{' '.join(pending_init)}]"
        return [
            self.condition("PodReadyToStartContainers", pod.sandbox_ready and not terminal),
            self.condition(
                "Initialized",
                pod.initialized,
                "" if pod.initialized else "ContainersNotInitialized",
                "" if pod.initialized else init_message,
            ),
            self.condition("ContainersReady", *ready_args),
            self.condition("Ready", *pod_ready),
            self.condition("PodScheduled", True),
        ]

    def status(self, pod: PodRuntime) -> JSON:
        host = pod.ctx.host_ip
        status: JSON = {
            "phase": phase(pod),
            "hostIP": host,
            "hostIPs": [{"ip": host}],
            "conditions": self.conditions(pod),
            "containerStatuses": [run.status() for run in pod.mains],
        }
        if pod.inits:
            status["initContainerStatuses"] = [run.status() for run in pod.inits]
        if pod.pod_ip:
            status["podIP"] = pod.pod_ip
            status["podIPs"] = [{"ip": pod.pod_ip}]
        if pod.start_time:
            status["startTime"] = pod.start_time
        if pod.final_phase and pod.reason:
            status["reason"] = pod.reason
        if pod.final_phase and pod.message:
            status["message"] = pod.message
        return status

    def push(self, pod: PodRuntime) -> bool:
        """Patch pods/status if it changed; True when the API has our latest status."""
        status = self.status(pod)
        encoded = json.dumps(status, sort_keys=True)
        if encoded == self._pushed:
            return True
        if time.monotonic() - self._last_push_error < RETRY_SECONDS:
            return False
        body = {"metadata": {"uid": pod.uid}, "status": status}
        try:
            pod.ctx.api.patch(pod_path(pod.namespace, pod.name, "status"), body)
        except ApiError as error:
            if error.status in (404, 409):
                log.info("pod %s/%s is gone (%s)", pod.namespace, pod.name, error.status)
                pod.removed = True
                return False
            self._push_failed(pod, error)
            return False
        except TRANSPORT_ERRORS as error:
            self._push_failed(pod, error)
            return False
        self._pushed = encoded
        return True

    def _push_failed(self, pod: PodRuntime, error: BaseException) -> None:
        self._last_push_error = time.monotonic()
        log.warning("pod %s/%s: status update failed: %s", pod.namespace, pod.name, error)
