"""The testbed pod agent: a stand-in kubelet (and scheduler) for e2e tests.

    PYTHONPATH=tools python -m testbed.podagent --kubeconfig K --state-dir D

The command line: one agent per state directory, its node, log server, heartbeats and pod watch.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from .. import localhost
from ..kubeapi import API_ERRORS, KubeAPI
from .agent import MAX_BACKOFF_SECONDS, PodAgent
from .container import process_start_time
from .context import AddressPool, NodeContext
from .images import DEFAULT_IMAGES_FILE, ImageCatalog
from .logs import LogServer, ensure_certificate
from .node import HOST_IP, NODE_NAME, Node, memory_bytes

log = logging.getLogger("testbed.podagent")

DEFAULT_STATE_DIR = localhost.checkout_state_dir("podagent")


@contextlib.contextmanager
def state_lock(state_dir: Path, owner: int = 0) -> Iterator[None]:
    """One agent per state directory; ``agent.pid`` names it (and its owner) while it runs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "agent.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another pod agent uses {state_dir}") from None
        pid_file = state_dir / "agent.pid"
        owner_start = process_start_time(owner) if owner else None
        fields = [os.getpid(), process_start_time(os.getpid()), owner, owner_start]
        pid_file.write_text(" ".join(str(f) for f in fields) + "\n")
        try:
            yield
        finally:
            pid_file.unlink(missing_ok=True)


def build_context(args: argparse.Namespace) -> NodeContext:
    api = KubeAPI(args.kubeconfig)
    state_dir = Path(args.state_dir).resolve()
    return NodeContext(
        api=api,
        node_name=args.node_name,
        host_ip=HOST_IP,
        state_dir=state_dir,
        images=ImageCatalog.load(Path(args.images)),
        addresses=AddressPool(),
        apiserver=api.endpoint,
        cpu=os.cpu_count() or 1,
        memory=memory_bytes(),
    )


def watch_owner(owner: int, stop: threading.Event) -> None:
    """Stop the agent when the process that started it (a test session) is gone."""
    started = process_start_time(owner)
    while not stop.wait(2.0):
        if started is None or process_start_time(owner) != started:
            log.info("owner process %d is gone", owner)
            stop.set()


def register_node(node: Node, stop: threading.Event) -> None:
    backoff = 1.0
    while not stop.is_set():
        try:
            node.register()
            return
        except API_ERRORS as error:
            log.warning("node registration failed: %s; retrying in %.0f s", error, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def serve(args: argparse.Namespace) -> int:
    ctx = build_context(args)
    with state_lock(ctx.state_dir, args.owner_pid):
        ready_file = ctx.state_dir / "agent.ready"
        ready_file.unlink(missing_ok=True)
        agent = PodAgent(ctx)
        cert, key = ensure_certificate(ctx.state_dir / "tls", ctx.node_name)
        logs = LogServer(agent.log_source, cert, key, host=ctx.host_ip, port=args.log_port)
        logs.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: agent.stop.set())
        node = Node(ctx, logs.port)
        register_node(node, agent.stop)
        threading.Thread(
            target=node.run_heartbeats, args=(agent.stop,), name="heartbeat", daemon=True
        ).start()
        if args.owner_pid:
            threading.Thread(
                target=watch_owner, args=(args.owner_pid, agent.stop), name="owner", daemon=True
            ).start()
        watching = threading.Event()
        threading.Thread(target=agent.run, args=(watching,), name="pod-watch", daemon=True).start()
        while not agent.stop.is_set() and not watching.wait(0.5):
            pass
        if not agent.stop.is_set():
            ready_file.write_text(
                json.dumps({"pid": os.getpid(), "node": ctx.node_name, "logPort": logs.port})
            )
            log.info(
                "pod agent ready: node %s, log server on %s:%d",
                ctx.node_name,
                ctx.host_ip,
                logs.port,
            )
        agent.stop.wait()
        log.info("pod agent stopping")
        ready_file.unlink(missing_ok=True)
        agent.shutdown()
        logs.stop()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.podagent", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        required=not os.environ.get("KUBECONFIG"),
    )
    parser.add_argument(
        "--state-dir", default=str(DEFAULT_STATE_DIR), help="logs, volumes, certificates"
    )
    parser.add_argument("--node-name", default=NODE_NAME)
    parser.add_argument("--images", default=str(DEFAULT_IMAGES_FILE), help="image mapping (YAML)")
    parser.add_argument(
        "--log-port", type=int, default=0, help="log server port (0: any free port)"
    )
    parser.add_argument(
        "--owner-pid", type=int, default=0, help="exit when this process (a test session) exits"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return serve(args)
