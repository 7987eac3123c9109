"""`make demo`: the quickstart on a real control plane, left running to look around.

Brings up the local control plane, the pod agent, a private PostgreSQL and the operator; applies
examples/quickstart; waits until the DatabaseMigration is Ready; prints what a user would look at.
`python -m testbed.demo down` (make demo-down) stops everything it started.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException

from testbed import cluster, databases, kubetest, localhost
from testbed.controlplane import state

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart" / "migration.yaml"
NAMESPACE = "shop"
SYSTEM_NAMESPACE = "lockstep-system"
DEMO_DATABASE = "lockstep_demo_shop"
LOCKSTEP = Path(sys.executable).parent / "lockstep"


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def state_dir() -> Path:
    return state.state_dir() / "demo"


def start_detached(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a long-lived process in its own session; remember its pid for `down`."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = directory / f"{name}.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    with (directory / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


def demo_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return admin_url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"


def apply_quickstart(api: client.ApiClient, database_url: str) -> None:
    custom = client.CustomObjectsApi(api)
    for document in yaml.safe_load_all(QUICKSTART.read_text()):
        if not document:
            continue
        document["metadata"]["namespace"] = NAMESPACE
        if document["kind"] == "Secret":
            document.pop("stringData", None)
            document["data"] = {"url": base64.b64encode(database_url.encode()).decode()}
        try:
            if document["kind"] == "DatabaseMigration":
                custom.create_namespaced_custom_object(
                    "lockstep.dev", "v1alpha1", NAMESPACE, "databasemigrations", document
                )
            else:
                utils.create_from_dict(api, document, namespace=NAMESPACE)
        except (ApiException, utils.FailToCreateError) as error:
            if "AlreadyExists" not in str(error):
                raise


def wait_ready(api: client.ApiClient, timeout: float = 120.0) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = custom.get_namespaced_custom_object(
            "lockstep.dev", "v1alpha1", NAMESPACE, "databasemigrations", "shop"
        )
        for condition in (last.get("status") or {}).get("conditions") or []:
            if condition["type"] == "Ready" and condition["status"] == "True":
                return last
        time.sleep(0.5)
    raise RuntimeError(f"shop did not become Ready in {timeout}s; status: {last.get('status')}")


def kubectl(running: state.Cluster, *args: str) -> None:
    subprocess.run(
        [str(running.kubectl), "--kubeconfig", str(running.kubeconfig), *args], check=False
    )


def up() -> int:
    started = time.monotonic()
    say("starting the control plane (the first run builds it from Go modules: minutes)")
    running = cluster.up()
    say("starting the pod agent and PostgreSQL")
    start_detached(
        "podagent",
        [
            sys.executable,
            "-m",
            "testbed.podagent",
            "--kubeconfig",
            str(running.kubeconfig),
            "--state-dir",
            str(running.state_dir / "podagent"),  # the e2e fixtures reuse this agent
        ],
        env={"PYTHONPATH": str(REPO / "tools")},
    )
    database_url = demo_database(databases.up(["postgresql"])["postgresql"])
    url_file = state_dir() / "database-url"
    url_file.parent.mkdir(parents=True, exist_ok=True)
    url_file.touch(mode=0o600)
    url_file.write_text(database_url)
    api = config.new_client_from_config(config_file=str(running.kubeconfig))
    core = client.CoreV1Api(api)
    kubetest.apply_crds(api)
    for namespace in (SYSTEM_NAMESPACE, NAMESPACE):
        ensure_namespace(core, namespace)
    http_port, webhook_port = operator_ports()
    say(f"starting the operator (metrics on :{http_port}, gate webhook on :{webhook_port})")
    start_detached(
        "operator",
        [
            str(LOCKSTEP),
            "operator",
            "--kubeconfig",
            str(running.kubeconfig),
            "--lease-namespace",
            SYSTEM_NAMESPACE,
            "--http-port",
            str(http_port),
            "--webhook-port",
            str(webhook_port),
            "--webhook-url",
            f"https://127.0.0.1:{webhook_port}",
        ],
    )
    set_up_seconds = time.monotonic() - started
    say("applying examples/quickstart")
    applied = time.monotonic()
    apply_quickstart(api, database_url)
    body = wait_ready(api)
    say(
        f"shop is Ready {time.monotonic() - applied:.1f}s after it was applied "
        f"(setting up the test bed took {set_up_seconds:.1f}s)\n"
    )
    kubectl(running, "get", "dbm", "-n", NAMESPACE)
    print()
    print(yaml.safe_dump({"status": body["status"]}, sort_keys=False))
    kubectl(running, "get", "jobs,pods", "-n", NAMESPACE, "-l", "lockstep.dev/migration=shop")
    print(
        f"""
Look around:
  export KUBECONFIG={running.kubeconfig} PATH={running.kubectl.parent}:$PATH
  kubectl describe dbm -n shop shop
  psql "$(cat {url_file})"          # the demo database (the URL stays in that 0600 file)
  curl -s localhost:{http_port}/metrics | grep ^lockstep_

Left running (state under {running.state_dir.parent}):
  control plane   {running.server}  (etcd, kube-apiserver, kube-controller-manager)
  pod agent       the node that runs the Jobs' pods as local processes
  PostgreSQL      {redacted(database_url)}
  operator        :{http_port} (metrics, probes), :{webhook_port} (gate webhook)
Stop all of it: make demo-down"""
    )
    return 0


def operator_ports() -> tuple[int, int]:
    """The operator's ports: kept from an earlier `up` of this checkout, else free ones."""
    ports_file = state_dir() / "ports"
    if ports_file.exists():
        http_port, webhook_port = (int(p) for p in ports_file.read_text().split())
        return http_port, webhook_port
    ports = (localhost.free_port(), localhost.free_port())
    ports_file.parent.mkdir(parents=True, exist_ok=True)
    ports_file.write_text(f"{ports[0]} {ports[1]}")
    return ports


def redacted(url: str) -> str:
    """``url`` without its password: what can be printed."""
    scheme, _, rest = url.partition("://")
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + '@' if user else ''}{location}"


def stop(name: str) -> bool:
    """Stop a process the demo started (SIGTERM to its session); True if one was running."""
    pid_file = state_dir() / f"{name}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not _alive(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.1)
    return True


def down() -> int:
    for name in ("operator", "podagent"):
        stop(name)
    cluster.down()
    databases.down()
    say("stopped the operator, the pod agent, the control plane and the databases")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo")
    parser.add_argument("command", choices=["up", "down"], nargs="?", default="up")
    args = parser.parse_args()
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
