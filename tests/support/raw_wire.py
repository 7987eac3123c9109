"""What the operator and the plugin send, seen by a local HTTP server: on this checkout's
Kubernetes client (tests/unit/test_raw_requests.py) and on client 35
(tests/integration/test_older_client.py).

`PROBE` runs in a fresh interpreter: it starts the server, sends the requests whose form matters
(patch content types, watch and list query names, the bearer token and its refresh hook) through
`lockstep.kube` and the plugin's client, and prints what the server saw and which generated API
group modules got imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lockstep

TREE = str(Path(lockstep.__file__).resolve().parents[1])

PROBE = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

seen = []
LIVE = {"metadata": {"name": "x", "resourceVersion": "5"}, "spec": {"containers": []},
        "items": [{"metadata": {"name": "p1"}}],
        "webhooks": [{"name": n, "clientConfig": c, "admissionReviewVersions": ["v1"],
                      "sideEffects": "None"} for n, c in (("a", {"caBundle": "b2xk"}), ("b", {}))]}


class Stub(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self):
        size = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(size) if size else b""
        url = urlsplit(self.path)
        seen.append([self.command, url.path, dict(parse_qsl(url.query)),
                     self.headers.get("Content-Type"), self.headers.get("Authorization"),
                     json.loads(sent) if sent else None])
        status, body = 200, json.dumps(LIVE).encode()
        if "conflict" in url.path:
            status, body = 409, b'{"kind": "Status", "message": "taken"}'
        elif url.query.find("watch=true") >= 0:
            end = {"metadata": {"annotations": {"k8s.io/initial-events-end": "true"}}}
            body = json.dumps({"type": "BOOKMARK", "object": end}).encode() + b"\n"
        elif url.path.endswith("/log"):
            body = b"the end of the log\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer


server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
threading.Thread(target=server.serve_forever, daemon=True).start()
host = f"http://127.0.0.1:{server.server_address[1]}"

from kubernetes import client

import lockstep.controller.handlers  # noqa: F401  (everything the operator imports)
from lockstep.kube import ConflictError, leases, objects, webhook_config
from lockstep.plugin.client import KubeCluster

def configuration(token):
    made = client.Configuration()
    made.host = host
    # Client 36 on: the loaders keep the token as "BearerToken"; 35 and older: "authorization".
    made.api_key = {"BearerToken": token, "authorization": token}
    made.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
    made.refresh_api_key_hook = refreshed.append  # what an exec or in-cluster config sets
    return made

refreshed = []

client.Configuration.set_default(configuration("t"))
objects.label_job("ns", "j1", {"a": "b"})
objects.patch_migration_status("ns", "m1", {"phase": "Running"})
assert objects.remove_scheduling_gate("ns", "p1", [], "5")
assert objects.serves_streaming_lists(None)
assert objects.list_page("jobs", None, "a=b", "next", 50)[0][0]["kind"] == "Job"
assert objects.read_log_tail("ns", "p1", "c", 7) == "he log\n"
leases.write_lease("ns", "l", {"holderIdentity": "me"}, "5")
assert webhook_config.inject_webhook_ca("x", b"new")
try:
    pod = {"spec": {"containers": []}}
    objects.create_job("conflict", {"metadata": {"name": "j"}, "spec": {"template": pod}})
    raise AssertionError("no ConflictError")
except ConflictError:
    pass
plugin = KubeCluster(configuration("p"), "ns")
plugin.patch_migration("ns", "m1", {"spec": {"approve": True}})
assert "".join(plugin.pod_log("ns", "p1", "c", follow=True)) == "the end of the log\n"
assert len(refreshed) == len(seen)  # each request asked for a fresh token
loaded = sorted(m for m in sys.modules if m.startswith("kubernetes.client.api."))
import kubernetes
print(json.dumps({"seen": seen, "loaded": loaded, "client": kubernetes.__version__}))
"""


def run_probe(*paths: str) -> dict[str, Any]:
    """Run PROBE with ``paths`` first on its PYTHONPATH, then this checkout's operator code."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, TREE])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def check_wire(report: dict[str, Any]) -> None:
    """The requests are what the generated methods sent."""
    wire = {(row[0], row[1]): tuple(row[2:]) for row in report["seen"]}  # the last of each
    # Patches: a dict on a built-in kind is a strategic merge patch, a list a JSON Patch, the
    # custom resource's status a merge patch (what each generated method chose).
    strategic = "application/strategic-merge-patch+json"
    assert wire["PATCH", "/apis/batch/v1/namespaces/ns/jobs/j1"][1] == strategic
    status = "/apis/lockstep.dev/v1alpha1/namespaces/ns/databasemigrations/m1/status"
    assert wire["PATCH", status][1:] == (
        "application/merge-patch+json",
        "Bearer t",
        {"status": {"phase": "Running"}},
    )
    webhook = wire["PATCH", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/x"]
    assert webhook[1] == "application/json-patch+json"
    assert [op["op"] for op in webhook[3]] == ["replace", "add"]
    plugin_patch = wire["PATCH", "/apis/lockstep.dev/v1alpha1/namespaces/ns/databasemigrations/m1"]
    assert plugin_patch[:3] == (
        {"fieldManager": "kubectl-lockstep"},
        "application/merge-patch+json",
        "Bearer p",
    )
    patches = [
        row for row in report["seen"] if row[:2] == ["PATCH", "/api/v1/namespaces/ns/pods/p1"]
    ]
    assert [row[3] for row in patches] == [strategic, "application/json-patch+json"]
    # Writes of whole objects say they are JSON (client 37's generated ones said nothing, 35's
    # said JSON; the API server takes JSON either way).
    lease = wire["PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"]
    assert lease[1] == "application/json" and lease[3]["metadata"]["resourceVersion"] == "5"
    # Query names as on the wire.
    assert wire["GET", "/api/v1/pods"][0] == {
        "labelSelector": "lockstep.dev/streaming-list-probe=none",
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "1",
    }
    assert wire["GET", "/apis/batch/v1/jobs"][0] == {
        "labelSelector": "a=b",
        "limit": "50",
        "continue": "next",
    }
    logs = [row[2] for row in report["seen"] if row[1] == "/api/v1/namespaces/ns/pods/p1/log"]
    assert logs == [{"container": "c", "tailLines": "200"}, {"container": "c", "follow": "true"}]
