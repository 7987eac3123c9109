"""Container probes for the testbed pod agent: exec, httpGet and tcpSocket.

Thresholds and timing follow the API fields (``initialDelaySeconds``,
``periodSeconds``, ``timeoutSeconds``, ``successThreshold``,
``failureThreshold``); the apiserver fills in their defaults. gRPC probes are
not supported and always fail with a message saying so.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..kubeapi import JSON

if TYPE_CHECKING:
    from .container import ContainerRun
    from .runtime import PodRuntime

log = logging.getLogger("testbed.podruntime")

# Runs an exec probe's command inside the container: (argv, timeout) -> (ok, output).
ExecRunner = Callable[[list[str], float], tuple[bool, str]]


@dataclass
class ProbeState:
    """Schedule and consecutive-result counters of one probe of one container run."""

    spec: JSON
    next_at: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None
    message: str = ""

    @classmethod
    def create(cls, spec: JSON, now: float) -> ProbeState:
        return cls(spec, now + float(spec.get("initialDelaySeconds") or 0))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, message: str, now: float) -> None:
        self.next_at = now + float(self.spec.get("periodSeconds") or 10)
        self.message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold") or 1):
                self.result = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold") or 3):
                self.result = False


def _port(value: int | str, ports: list[JSON]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in ports:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"no container port named {value!r}")


def _http_get(spec: JSON, host: str, ports: list[JSON], timeout: float) -> tuple[bool, str]:
    port = _port(spec["port"], ports)
    target = spec.get("host") or host
    connection: http.client.HTTPConnection
    if str(spec.get("scheme") or "HTTP").upper() == "HTTPS":
        context = ssl._create_unverified_context()  # noqa: S323 - probes do not verify, like the kubelet
        connection = http.client.HTTPSConnection(target, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(target, port, timeout=timeout)
    headers = {"User-Agent": "kube-probe/testbed", "Accept": "*/*"}
    headers.update({h["name"]: h["value"] for h in spec.get("httpHeaders") or []})
    try:
        connection.request("GET", spec.get("path") or "/", headers=headers)
        status = connection.getresponse().status
    finally:
        connection.close()
    return 200 <= status < 400, f"HTTP probe to {target}:{port} returned {status}"


def _tcp(spec: JSON, host: str, ports: list[JSON], timeout: float) -> tuple[bool, str]:
    port = _port(spec["port"], ports)
    target = spec.get("host") or host
    with socket.create_connection((target, port), timeout=timeout):
        return True, f"TCP probe to {target}:{port} connected"


def run_probe(
    spec: JSON, *, host: str, ports: list[JSON], exec_runner: ExecRunner
) -> tuple[bool, str]:
    """Run one probe attempt; never raises."""
    timeout = float(spec.get("timeoutSeconds") or 1)
    try:
        if "exec" in spec:
            return exec_runner([str(a) for a in spec["exec"].get("command") or []], timeout)
        if "httpGet" in spec:
            return _http_get(spec["httpGet"], host, ports, timeout)
        if "tcpSocket" in spec:
            return _tcp(spec["tcpSocket"], host, ports, timeout)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return False, f"probe failed: {error}"
    return False, f"probe type {sorted(spec)} is not supported by the testbed pod agent"


def check(pod: PodRuntime, run: ContainerRun, now: float) -> None:
    """Run the probes of a running container that are due: started, alive, ready."""
    ports = run.spec.get("ports") or []

    def attempt(kind: str) -> bool | None:
        probe = run.probes[kind]
        if not probe.due(now):
            return probe.result
        ok, message = run_probe(probe.spec, host=pod.pod_ip, ports=ports, exec_runner=run.run_exec)
        probe.record(ok, message, time.monotonic())
        if not ok:
            log.debug(
                "pod %s/%s: %s probe of %s failed: %s",
                pod.namespace,
                pod.name,
                kind,
                run.name,
                message,
            )
        return probe.result

    if not run.started:
        if "startup" in run.probes:
            result = attempt("startup")
            if result is False:
                _unhealthy(pod, run, "startup", now)
                return
            if result is not True:
                return
        run.started = True
    if "liveness" in run.probes and attempt("liveness") is False:
        _unhealthy(pod, run, "liveness", now)
        return
    run.ready = attempt("readiness") is True if "readiness" in run.probes else True


def _unhealthy(pod: PodRuntime, run: ContainerRun, kind: str, now: float) -> None:
    probe = run.probes[kind]
    log.info(
        "pod %s/%s: %s probe of %s failed, killing it", pod.namespace, pod.name, kind, run.name
    )
    grace = probe.spec.get("terminationGracePeriodSeconds")
    run.stop(float(grace) if grace is not None else pod.grace_seconds(), now)
