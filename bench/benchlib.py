"""Shared pieces of the Lockstep benchmarks (bench/run.py and its stages).

* a private test bed: the e2e control plane of `testbed.cluster`, the pod agent, the private
  PostgreSQL of `testbed.databases`, in a state directory of the bench's own;
* identities: a ServiceAccount (and a token kubeconfig) for the operator and one for the floor
  client, so that the API server can tell their requests apart;
* `ApiMeter`: requests per identity, verb and resource, from the API server's own metrics
  (`apiserver_flowcontrol_dispatched_requests_total`, one FlowSchema per identity and request
  kind: `apiserver_request_total` has no user label);
* `Observer`: watch streams that note when each object reached each state (same clock, same
  client, for the operator and for the floor);
* `ProcessMeter`: RSS and CPU seconds of a process, from /proc.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "tools", REPO / "tests" / "support"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from kubernetes.watch.watch import iter_resp_lines  # noqa: E402

GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "databasemigrations"
SYSTEM_NAMESPACE = "lockstep-system"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MIGRATION_LABEL = "lockstep.dev/migration"
WAIT_FOR_LABEL = "lockstep.dev/wait-for"
GATE = "lockstep.dev/migration"
DRIVER_LABEL = "bench.lockstep.dev/driver"  # "operator" or "floor": who reconciles the object
RUNNER_IMAGE = "ghcr.io/lockstep-dev/lockstep:bench"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- numbers


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """n, p50, p95, max and mean of `values` (seconds, say)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def percentile(p: float) -> float:
        # Nearest rank: the smallest value with at least p% of the samples at or below it.
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]

    return {
        "n": len(ordered),
        "p50": round(percentile(50), digits),
        "p95": round(percentile(95), digits),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return round(value / floor, 2)


# --------------------------------------------------------------------------- the machine


def machine(kube_version: str | None = None) -> dict[str, Any]:
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "kubernetes": kube_version,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessSample:
    at: float
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int  # VmHWM: the highest RSS since the process started


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sample_process(pid: int) -> ProcessSample:
    """CPU seconds (user + system, threads included) and RSS of `pid`, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return ProcessSample(time.monotonic(), cpu, rss, peak)


def mib(value: float) -> float:
    return round(value / 2**20, 1)


# --------------------------------------------------------------------------- the test bed


@dataclass
class Identity:
    """A ServiceAccount with cluster-admin, and a kubeconfig that authenticates as it."""

    name: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{SYSTEM_NAMESPACE}:{self.name}"


def ensure_namespace(api: client.ApiClient, name: str, labels: Mapping[str, str] = {}) -> None:
    body: Any = {"metadata": {"name": name, "labels": dict(labels)}}
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as error:
        if error.status != 409:
            raise


def make_identity(api: client.ApiClient, admin_kubeconfig: Path, name: str, out: Path) -> Identity:
    """A ServiceAccount bound to cluster-admin, with a token kubeconfig in `out`.

    Not system:masters: those requests skip API Priority and Fairness (the `exempt` FlowSchema),
    and the bench counts requests per FlowSchema.
    """
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ensure_namespace(api, SYSTEM_NAMESPACE)
    account: Any = {"metadata": {"name": name}}
    with contextlib.suppress(ApiException):
        core.create_namespaced_service_account(SYSTEM_NAMESPACE, account)
    binding: Any = {
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": SYSTEM_NAMESPACE}],
    }
    with contextlib.suppress(ApiException):
        rbac.create_cluster_role_binding(binding)
    request: Any = {"spec": {"expirationSeconds": 48 * 3600}}
    token = core.create_namespaced_service_account_token(name, SYSTEM_NAMESPACE, request).status
    assert token is not None
    admin = json.loads(admin_kubeconfig.read_text())
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": name, "user": {"token": token.token}}],
        "contexts": [
            {"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}
        ],
        "current-context": name,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    out.chmod(0o600)
    # RBAC takes a moment to see a new binding; a client that starts before gets 403s and
    # backs off (Kopf for a minute or more).
    probe = api_client(out, pool=1)
    deadline = time.monotonic() + 30
    while True:
        try:
            raw_request(probe, "GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}", {"limit": "1"})
            raw_request(probe, "GET", "/api/v1/pods", {"limit": "1"})
            break
        except HttpError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return Identity(name, out)


# --------------------------------------------------------------------------- API requests


@dataclass(frozen=True)
class RequestKind:
    """One FlowSchema rule: requests of these verbs on these resources (or non-resource URLs)."""

    name: str
    verbs: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    non_resource: bool = False


# In matching order: the first kind that matches a request counts it.
REQUEST_KINDS = (
    RequestKind("lease", ("*",), ("leases",)),
    RequestKind("watch", ("watch",)),
    RequestKind("list pods", ("list",), ("pods",)),
    RequestKind("list jobs", ("list",), ("jobs",)),
    RequestKind("list databasemigrations", ("list",), ("databasemigrations",)),
    RequestKind("list other", ("list",)),
    RequestKind("get secrets", ("get",), ("secrets",)),
    RequestKind("get configmaps", ("get",), ("configmaps",)),
    RequestKind("get databasemigrations", ("get",), ("databasemigrations",)),
    RequestKind("get mutatingwebhookconfigurations", ("get",), ("mutatingwebhookconfigurations",)),
    RequestKind("get pods/log", ("get",), ("pods/log",)),
    RequestKind("get other", ("get",)),
    RequestKind("create jobs", ("create",), ("jobs",)),
    RequestKind("create events", ("create",), ("events",)),
    RequestKind("create other", ("create",)),
    RequestKind("patch databasemigrations/status", ("patch",), ("databasemigrations/status",)),
    RequestKind("patch pods", ("patch",), ("pods",)),
    RequestKind("patch events", ("patch",), ("events",)),
    RequestKind("patch other", ("patch",)),
    RequestKind(
        "update mutatingwebhookconfigurations", ("update",), ("mutatingwebhookconfigurations",)
    ),
    RequestKind("update other", ("update",)),
    RequestKind("delete", ("delete", "deletecollection")),
    RequestKind("other", ("*",)),
    RequestKind("discovery", ("*",), non_resource=True),
)
# Kinds that are not work on a migration's behalf: streams and leadership.
OVERHEAD_KINDS = frozenset({"lease", "watch", "discovery"})
METRIC = "apiserver_flowcontrol_dispatched_requests_total"
FLOW_PREFIX = "lockstep-bench"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def flow_schema_name(who: str, kind: RequestKind) -> str:
    return f"{FLOW_PREFIX}-{who}-{_slug(kind.name)}"


class ApiMeter:
    """Counts each identity's requests by kind, as the API server's own metrics report them.

    For every identity and request kind there is a FlowSchema matching only that identity's
    requests of that kind (precedence 20-60, ahead of the built-in schemas but after `exempt`),
    all mapped to the `workload-low` priority level, where a ServiceAccount's requests go
    anyway. `apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}` then counts them.
    A watch is counted once, when it is opened.
    """

    def __init__(self, api: client.ApiClient, scrape: Callable[[], str]) -> None:
        self.api = api
        self.scrape = scrape
        self.identities: dict[str, Identity] = {}

    def install(self, who: str, identity: Identity) -> None:
        flow = client.FlowcontrolApiserverV1Api(self.api)
        subject = {
            "kind": "ServiceAccount",
            "serviceAccount": {"name": identity.name, "namespace": SYSTEM_NAMESPACE},
        }
        for precedence, kind in enumerate(REQUEST_KINDS, start=20):
            rule: dict[str, Any] = {"subjects": [subject]}
            if kind.non_resource:
                rule["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
            else:
                rule["resourceRules"] = [
                    {
                        "verbs": list(kind.verbs),
                        "apiGroups": ["*"],
                        "resources": list(kind.resources),
                        "clusterScope": True,
                        "namespaces": ["*"],
                    }
                ]
            body: Any = {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": flow_schema_name(who, kind)},
                "spec": {
                    "matchingPrecedence": precedence,
                    "priorityLevelConfiguration": {"name": "workload-low"},
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [rule],
                },
            }
            try:
                flow.create_flow_schema(body)
            except ApiException as error:
                if error.status != 409:
                    raise
        self.identities[who] = identity
        # The API server applies new FlowSchemas within a second or so.
        time.sleep(1.5)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """who -> request kind -> requests so far."""
        names = {
            flow_schema_name(who, kind): (who, kind.name)
            for who in self.identities
            for kind in REQUEST_KINDS
        }
        counts: dict[str, dict[str, float]] = {who: {} for who in self.identities}
        pattern = re.compile(rf'^{METRIC}\{{flow_schema="([^"]+)",priority_level="[^"]*"\}} (\S+)$')
        for line in self.scrape().splitlines():
            match = pattern.match(line)
            if match and match.group(1) in names:
                who, kind = names[match.group(1)]
                counts[who][kind] = counts[who].get(kind, 0.0) + float(match.group(2))
        return counts

    @staticmethod
    def delta(
        before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
    ) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for who, kinds in after.items():
            changed = {
                kind: int(count - before.get(who, {}).get(kind, 0.0))
                for kind, count in kinds.items()
            }
            result[who] = {k: v for k, v in sorted(changed.items()) if v}
        return result


def work_requests(kinds: Mapping[str, int]) -> int:
    """Requests done on the migrations' behalf: all but watches, leases and discovery."""
    return sum(v for k, v in kinds.items() if k not in OVERHEAD_KINDS)


# --------------------------------------------------------------------------- raw requests


class HttpError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]!r}")
        self.status = status


def raw_request(
    api: client.ApiClient,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: float | tuple[float, float] | None = 30,
    stream: bool = False,
) -> Any:
    """One request with the client's credentials and connection pool, no model classes.

    Returns the urllib3 response when `stream`, else the decoded JSON body (or None).
    """
    headers = {"Content-Type": content_type} if content_type else {}
    serialized = api.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=timeout)
    if response.status >= 400:
        raise HttpError(method, path, response.status, response.read() or b"")  # type: ignore[no-untyped-call]
    if stream:
        return response.response
    data = response.read()  # type: ignore[no-untyped-call]
    return json.loads(data) if data else None


# --------------------------------------------------------------------------- watching


def list_and_watch(
    api: client.ApiClient,
    path: str,
    selector: str,
    handler: Callable[[str, dict[str, Any]], None],
    listed: threading.Event,
    stop: threading.Event,
    who: str,
) -> None:
    """List (each item as ADDED), then watch from that version until `stop`, relisting after a
    410 and watching again after any error: the loop of the floor client and the stand-in."""
    version = ""
    while not stop.is_set():
        try:
            if not version:
                listing = raw_request(api, "GET", path, {"labelSelector": selector})
                for item in listing.get("items") or []:
                    handler("ADDED", item)
                version = listing["metadata"]["resourceVersion"]
                listed.set()
            query = {
                "labelSelector": selector,
                "watch": "true",
                "resourceVersion": version,
                "timeoutSeconds": "300",
            }
            stream = raw_request(api, "GET", path, query, timeout=(10, 600), stream=True)
            for line in iter_resp_lines(stream):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = ""
                    break
                version = obj.get("metadata", {}).get("resourceVersion") or version
                handler(str(event.get("type")), obj)
        except Exception as error:  # noqa: BLE001 - keep watching, whatever happened
            print(f"{who}: watch {path}: {error}", file=sys.stderr, flush=True)
            time.sleep(0.5)


def condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def is_ready(body: Mapping[str, Any]) -> bool:
    found = condition(body, "Ready")
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    return bool(
        found and found.get("status") == "True" and status.get("observedGeneration") == generation
    )


def job_complete(body: Mapping[str, Any]) -> bool:
    found = condition(body, "Complete")
    return bool(found and found.get("status") == "True")


def has_gate(pod: Mapping[str, Any]) -> bool:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == GATE for g in gates)


Key = tuple[str, str]


@dataclass
class Marks:
    """When the observer first saw each object in each state (time.monotonic())."""

    migration_added: dict[Key, float] = field(default_factory=dict)
    migration_ready: dict[Key, float] = field(default_factory=dict)
    job_added: dict[Key, float] = field(default_factory=dict)  # keyed by the migration
    job_complete: dict[Key, float] = field(default_factory=dict)  # keyed by the migration
    pod_gated: dict[Key, float] = field(default_factory=dict)  # app pods, keyed by the pod
    pod_released: dict[Key, float] = field(default_factory=dict)


class Observer:
    """Watches DatabaseMigrations, Lockstep's Jobs and gated app pods; notes first sightings.

    Raw watch streams (no model classes), one thread each, as the admin: the same path and the
    same clock for the operator's objects and the floor client's.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.marks = Marks()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.changed = threading.Condition()
        self.events: dict[tuple[str, str], int] = {}
        self.responses: list[Any] = []

    def start(self) -> None:
        streams: list[tuple[str, dict[str, str], Callable[[str, dict[str, Any], float], None]]] = [
            (f"/apis/{GROUP}/{VERSION}/{PLURAL}", {}, self._migration),
            ("/apis/batch/v1/jobs", {"labelSelector": MANAGED_BY_LABEL}, self._job),
            ("/api/v1/pods", {"labelSelector": WAIT_FOR_LABEL}, self._pod),
            ("/api/v1/pods", {"labelSelector": MANAGED_BY_LABEL}, self._job_pod),
        ]
        ready = []
        for path, query, handler in streams:
            started = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(path, query, handler, started), daemon=True
            )
            thread.start()
            self.threads.append(thread)
            ready.append(started)
        for started in ready:
            started.wait(30)

    def close(self) -> None:
        """Stop watching and close the streams (an open watch delays the API server's exit)."""
        self.stop.set()
        for response in list(self.responses):
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()

    def _run(
        self,
        path: str,
        query: Mapping[str, str],
        handler: Callable[[str, dict[str, Any], float], None],
        started: threading.Event,
    ) -> None:
        version = ""
        while not self.stop.is_set():
            try:
                if not version:
                    listing = raw_request(self.api, "GET", path, query)
                    for item in listing.get("items") or []:
                        handler("LISTED", item, time.monotonic())
                    version = listing["metadata"]["resourceVersion"]
                started.set()
                watch_query = {
                    **query,
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
                response = raw_request(
                    self.api, "GET", path, watch_query, timeout=(10, 600), stream=True
                )
                self.responses.append(response)
                if self.stop.is_set():
                    return
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    seen = time.monotonic()
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        version = ""  # 410 Gone: list again
                        break
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        handler(str(kind), obj, seen)
                    if self.stop.is_set():
                        return
            except Exception as error:  # noqa: BLE001 - keep watching, whatever happened
                if not self.stop.is_set():
                    log(f"observer: {path}: {type(error).__name__}: {error}; watching again")
                    time.sleep(0.5)

    def count(self, namespace: str, resource: str) -> None:
        key = (namespace, resource)
        self.events[key] = self.events.get(key, 0) + 1

    def events_in(self, namespace: str) -> dict[str, int]:
        """Watch events seen in a namespace, by resource (what a controller there receives)."""
        return {r: n for (ns, r), n in sorted(self.events.items()) if ns == namespace}

    def _job_pod(self, kind: str, body: dict[str, Any], at: float) -> None:
        if kind != "LISTED":
            self.count(body["metadata"]["namespace"], "pods")

    def _note(self, table: dict[Key, float], key: Key, at: float) -> None:
        if key not in table:
            table[key] = at
            with self.changed:
                self.changed.notify_all()

    def _migration(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if kind != "LISTED":
            self.count(key[0], "databasemigrations")
        if kind == "DELETED":
            return
        self._note(self.marks.migration_added, key, at)
        if is_ready(body):
            self._note(self.marks.migration_ready, key, at)

    def _job(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        migration = (metadata.get("labels") or {}).get(MIGRATION_LABEL)
        if kind != "LISTED":
            self.count(metadata["namespace"], "jobs")
        if kind == "DELETED" or not migration:
            return
        key = (metadata["namespace"], migration)
        self._note(self.marks.job_added, key, at)
        if job_complete(body):
            self._note(self.marks.job_complete, key, at)

    def _pod(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if kind == "DELETED":
            return
        if has_gate(body):
            self._note(self.marks.pod_gated, key, at)
        elif key in self.marks.pod_gated:
            self._note(self.marks.pod_released, key, at)

    def wait(self, what: str, done: Callable[[Marks], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self.marks):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.changed.wait(min(left, 1.0))


# --------------------------------------------------------------------------- objects


def migration_body(
    name: str,
    config_map: str,
    secret: str,
    key: str,
    engine: str,
    driver: str,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": name, "labels": {DRIVER_LABEL: driver}},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": config_map}},
            "target": "head",
            "database": {"engine": engine, "urlSecretRef": {"name": secret, "key": key}},
            **spec,
        },
    }


def create_migration(api: client.ApiClient, namespace: str, body: Mapping[str, Any]) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    raw_request(api, "POST", path, body=dict(body))


def create_config_map(
    api: client.ApiClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    body: Any = {"metadata": {"name": name}, "data": dict(data)}
    client.CoreV1Api(api).create_namespaced_config_map(namespace, body)


def create_secret(
    api: client.ApiClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body: Any = {"metadata": {"name": name}, "data": encoded}
    client.CoreV1Api(api).create_namespaced_secret(namespace, body)


def delete_namespaces(api: client.ApiClient, names: Iterable[str], timeout: float) -> None:
    """Delete namespaces and wait until they are gone (their objects with them)."""
    core = client.CoreV1Api(api)
    names = list(names)
    for name in names:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name)
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    left = set(names)
    while left and time.monotonic() < deadline:
        existing = {str(n.metadata.name) for n in core.list_namespace().items if n.metadata}
        left &= existing
        if left:
            time.sleep(1)
    if left:
        log(f"{len(left)} namespace(s) still terminating after {timeout:.0f}s: going on")


def api_client(kubeconfig: Path, pool: int = 16) -> client.ApiClient:
    """An ApiClient for `kubeconfig` that keeps up to `pool` connections (threads share it)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def run_in_threads(work: Sequence[Callable[[], None]], threads: int = 8) -> None:
    """Run the callables on a few threads; raise the first error."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(item) for item in work]:
            future.result()


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{what}: {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- the bed


@dataclass
class Bed:
    """The private control plane, PostgreSQL, identities and meters of one bench run."""

    state_dir: Path
    cluster: Any  # testbed.cluster.Cluster
    api: client.ApiClient
    pg_admin_url: str
    meter: ApiMeter
    operator: Identity
    floor: Identity
    agent: Any = None  # testbed.podagent.AgentProcess while the pod agent runs

    @property
    def kubeconfig(self) -> Path:
        return Path(self.cluster.kubeconfig)

    @property
    def work(self) -> Path:
        path = self.state_dir / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def kube_version(self) -> str:
        return str(client.VersionApi(self.api).get_code().git_version)

    def start_agent(self) -> None:
        from testbed import podagent

        if self.agent is None:
            self.agent = podagent.start_background(self.kubeconfig, self.state_dir / "podagent")

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None


def private_state(state_dir: Path) -> None:
    """Point the test bed at a state directory of this run's own (as .ci/run does)."""
    os.environ["LOCKSTEP_CLUSTER_DIR"] = str(state_dir / "cluster")
    os.environ["LOCKSTEP_DB_DIR"] = str(state_dir / "db")


@contextlib.contextmanager
def test_bed(state_dir: Path, keep: bool = False) -> Iterator[Bed]:
    """Start (or reuse, with `keep`) the bench's own control plane and PostgreSQL."""
    import kubetest
    from testbed import cluster, databases

    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # the `postgres` user must reach the database directory
    private_state(state_dir)
    running = cluster.up()
    admin_url = databases.ensure_postgres()
    api = api_client(Path(running.kubeconfig))
    bed: Bed | None = None
    try:
        kubetest.apply_crds(api)
        ensure_namespace(api, SYSTEM_NAMESPACE)
        identities = state_dir / "identities"
        identities.mkdir(exist_ok=True)
        operator = make_identity(
            api, running.kubeconfig, "lockstep-bench-operator", identities / "operator"
        )
        floor = make_identity(api, running.kubeconfig, "lockstep-bench-floor", identities / "floor")

        def scrape() -> str:
            status, text = cluster.api_get(running, "/metrics", timeout=30)
            if status != 200:
                raise RuntimeError(f"GET /metrics: HTTP {status}")
            return text

        meter = ApiMeter(api, scrape)
        meter.install("operator", operator)
        meter.install("floor", floor)
        bed = Bed(state_dir, running, api, admin_url, meter, operator, floor)
        yield bed
    finally:
        if bed is not None:
            bed.stop_agent()
        if not keep:
            log(f"stopping the bench's control plane and PostgreSQL ({state_dir})")
            cluster.down()
            databases.down()


# --------------------------------------------------------------------------- helper processes


class Helper:
    """A bench helper (floor client, stand-in kubelet) run as a process of its own."""

    def __init__(self, script: str, args: Sequence[str], log_dir: Path, name: str) -> None:
        self.argv = [sys.executable, str(REPO / "bench" / script), *args]
        self.log_file = log_dir / f"{name}.log"
        self.ready_file = log_dir / f"{name}.ready"
        self.process: Any = None
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def start(self, timeout: float = 60.0) -> None:
        import subprocess

        self.ready_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as output:
            self.process = subprocess.Popen(
                [*self.argv, "--ready-file", str(self.ready_file)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[1]} did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except Exception:  # noqa: BLE001 - it must go, one way or the other
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def floor_job_template(engine: str) -> str:
    """The Job Lockstep would build for a migration, as a template for the floor client.

    Built once by Lockstep's own builder with placeholders the floor client fills in by plain
    string replacement (name, namespace, uid, Secret, key, ConfigMap, generation).
    """
    from lockstep import jobs
    from lockstep.constants import DEFAULT_RUNNER_IMAGE
    from lockstep.model import parse_spec

    spec = parse_spec(
        {
            "tool": "sql",
            "source": {"configMapRef": {"name": "__CONFIGMAP__"}},
            "target": "head",
            "database": {
                "engine": engine,
                "urlSecretRef": {"name": "__SECRET__", "key": "__KEY__"},
            },
        }
    )
    owner = jobs.Owner("__NAME__", "__NAMESPACE__", "__UID__")
    request = jobs.JobRequest(attempt=0, target="head")
    job = jobs.build_job(owner, spec, "floor000", request, "floor", DEFAULT_RUNNER_IMAGE)
    job["metadata"]["labels"][DRIVER_LABEL] = "floor"
    job["metadata"]["annotations"]["bench.lockstep.dev/generation"] = "__GENERATION__"
    return json.dumps(job)


# --------------------------------------------------------------------------- profiling


def start_py_spy(pid: int, out: Path, idle: bool = False) -> Callable[[], None]:
    """Sample `pid` with py-spy (collapsed stacks to `out`) until the returned stop is called.

    Non-blocking sampling: the process is never paused, so latencies stay as they are.
    `idle` keeps samples of threads that wait (on the network, say): where the time goes,
    not only where the CPU goes.
    """
    import signal
    import subprocess

    spy = shutil_which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    argv += ["--nonblocking", "--output", str(out), *(["--idle"] if idle else [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)

    def stop() -> None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log(f"profile: {out}")

    return stop


def shutil_which(name: str) -> str | None:
    import shutil

    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def summarize_profile(path: Path, top: int = 30, focus: tuple[str, ...] = ()) -> list[str]:
    """Top functions by inclusive share of samples, from py-spy's collapsed stacks."""
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    if not total:
        return ["(no samples)"]
    rows = [
        (name, count)
        for name, count in inclusive.items()
        if not focus or any(f in name for f in focus)
    ]
    rows.sort(key=lambda item: -item[1])
    lines = [f"{total} samples; inclusive share, self share, function"]
    for name, count in rows[:top]:
        lines.append(f"{100 * count / total:6.1f}% {100 * leaf.get(name, 0) / total:6.1f}%  {name}")
    return lines


def _frame(text: str) -> str:
    """`function (path/to/module.py:123)` -> `module.py:function` (lines merged)."""
    match = re.match(r"(.*) \((.*?):\d+\)$", text.strip())
    if not match:
        return text.strip()
    function, path = match.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{short}:{function}"


# Where an operator's CPU samples go: the first rule whose substring is in the stack wins
# ("leaf:" rules look at the innermost frame only).
PROFILE_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting: event loop select", ("leaf:selectors.py",)),
    ("waiting: idle worker threads", ("leaf:futures/thread.py", "leaf:threading.py")),
    ("lockstep: version table read (new engine + connect)", ("lockstep/revisions.py",)),
    ("lockstep: lease renewals", ("lockstep/election.py", "lockstep/leader.py")),
    ("lockstep: cache copies and scans", ("lockstep/cache.py",)),
    ("lockstep: planning", ("lockstep/planning.py", "lockstep/conditions.py")),
    ("lockstep: metrics", ("lockstep/metrics.py", "prometheus_client")),
    ("lockstep: API calls (kube.py, kubernetes client)", ("lockstep/kube.py",)),
    ("kopf: per-event diff-base (deepcopy) and diff", ("diffbase.py", "diffs.py")),
    ("kopf: posting Events", ("posting.py",)),
    ("kopf: other event processing", ("kopf/_core/reactor",)),
    ("kopf: watch streams", ("kopf/",)),
    (
        "event loop I/O (aiohttp: Kopf's streams and requests)",
        ("leaf:selector_events.py", "leaf:ssl.py", "leaf:sslproto.py", "leaf:events.py"),
    ),
    ("lockstep: reconcile, other", ("lockstep/",)),
    ("other", ("",)),
)
# Inside the API calls: what the kubernetes client spends it on (innermost frame).
CLIENT_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("argument validation (pydantic validate_call)", ("leaf:pydantic",)),
    ("model (de)serialization", ("leaf:client/models", "leaf:api_client.py", "leaf:json")),
    ("HTTP, TLS, sockets", ("leaf:urllib3", "leaf:ssl.py", "leaf:socket.py", "leaf:http/")),
    ("other", ("",)),
)


def profile_areas(
    path: Path,
    areas: tuple[tuple[str, tuple[str, ...]], ...] = PROFILE_AREAS,
    within: str = "",
) -> list[tuple[str, float]]:
    """Share of samples per area, from py-spy's collapsed stacks (only stacks with `within`)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or within not in stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        for area, needles in areas:
            if any(
                needle[5:] in leaf if needle.startswith("leaf:") else needle in stack
                for needle in needles
            ):
                counts[area] = counts.get(area, 0) + int(count_text)
                break
        total += int(count_text)
    if not total:
        return []
    return sorted(
        ((area, round(100 * n / total, 1)) for area, n in counts.items()), key=lambda x: -x[1]
    )
