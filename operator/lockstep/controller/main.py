"""`lockstep operator`: HTTP endpoints on every replica, Kopf only on the Lease holder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import kopf
from aiohttp import web
from kopf._core.engines import peering  # Identity: a NewType of str that kopf does not export

from lockstep import kube
from lockstep.controller import (
    endpoints,
    leader_election,
    lease_rules,
    memory,
    metrics,
    pacing,
    retention,
    scope,
    webhook,
)

log = logging.getLogger("lockstep.operator")

EXIT_LOST_LEADERSHIP = 3
# Seconds between full passes of a settled migration (reconcile.DEFAULT_RESYNC_SECONDS, 600): set
# lower by bench/latency.py to measure what a resync costs within a short window.
RESYNC_ENV = "LOCKSTEP_RESYNC_SECONDS"
# No API server to talk to: a configuration problem, like a bad option (argparse's 2).
EXIT_NO_CLUSTER = 2


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    selector: scope.Selector = scope.EVERYTHING
    kubeconfig: str | None = None
    runner_image: str = ""
    keep_finished_jobs: int = retention.DEFAULT_KEEP_FINISHED_JOBS
    initial_pass_rate: float = pacing.DEFAULT_INITIAL_PASS_RATE
    watch_secrets: bool = False  # list/watch Secrets for the input cache (ADR 19, opt-in)
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    http_port: int = 8080
    leader_election: bool = True
    election: lease_rules.ElectionConfig = field(default_factory=lease_rules.ElectionConfig)
    webhook: webhook.WebhookOptions | None = None


def identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def run(options: OperatorOptions) -> int:
    if options.kubeconfig:
        # Kopf logs in through the kubernetes client, which reads $KUBECONFIG.
        os.environ["KUBECONFIG"] = options.kubeconfig
    try:
        kube.load_config(options.kubeconfig)
    except kube.NoClusterConfig as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_CLUSTER
    memory.limit_malloc_arenas()  # before asyncio's worker threads exist
    return asyncio.run(_main(options))


async def _main(options: OperatorOptions) -> int:
    from lockstep.controller import handlers

    if options.runner_image:
        handlers.reconciler.actor.runner_image = options.runner_image
    resync = os.environ.get(RESYNC_ENV)
    if resync:
        handlers.reconciler.resync_seconds = float(resync)
    handlers.scope_to(options.selector)
    handlers.watched_namespaces = options.namespaces
    handlers.reconciler.retention.keep_finished = options.keep_finished_jobs
    handlers.reconciler.pacer.rate = options.initial_pass_rate
    if options.watch_secrets:
        handlers.watch_secrets()
    else:
        log.info("not watching Secrets (no --watch-secrets): each Secret read is a GET")
    log.info(
        "keeping %d finished job(s) per migration; first passes paced at %.0f/s",
        options.keep_finished_jobs,
        options.initial_pass_rate,
    )
    log.info("acting on DatabaseMigrations matching: %s", options.selector.describe())
    readiness = endpoints.Readiness()
    http = await endpoints.start(options.http_host, options.http_port, readiness)
    gate_server = await _start_webhook(options.webhook, readiness)
    stop = asyncio.Event()
    try:
        if not options.leader_election:
            metrics.set_leader(True, options.election.lease_name)
            await _run_kopf(options, stop)
            return 0
        return await _lead(options, stop)
    finally:
        if gate_server is not None:
            await gate_server.cleanup()
        await http.cleanup()


async def _start_webhook(
    options: webhook.WebhookOptions | None, readiness: endpoints.Readiness
) -> web.AppRunner | None:
    """Every replica serves the gate, so pods are admitted even while leadership moves."""
    if options is None:
        readiness.ready = True
        return None
    material = await asyncio.to_thread(webhook.tls_material, options)
    server = await webhook.start(options, material)
    registered = asyncio.Event()

    def mark_ready() -> None:
        readiness.ready = True
        registered.set()

    _background.add(asyncio.create_task(webhook.keep_registered(options, material, mark_ready)))
    # Wait briefly so a replica that can register reports ready at once; one that cannot
    # (configuration not created yet) starts anyway and turns ready when it can.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(registered.wait(), timeout=10)
    return server


# Tasks that live as long as the process; kept referenced so they are not garbage-collected.
_background: set[asyncio.Task[None]] = set()


async def _lead(options: OperatorOptions, stop: asyncio.Event) -> int:
    elector = leader_election.Elector(
        options.election,
        identity(),
        on_change=lambda is_leader: metrics.set_leader(is_leader, options.election.lease_name),
    )
    metrics.set_leader(False, options.election.lease_name)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not await _first(elector.acquire(), stop.wait()):
        return 0  # asked to stop while standing by
    keeper = asyncio.create_task(elector.keep())
    operator = asyncio.create_task(_run_kopf(options, stop))
    done, _ = await asyncio.wait({keeper, operator}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done:
        # Another replica may already be leading: stop acting this instant and restart clean.
        log.error("leadership lost: exiting so that this replica restarts as a standby")
        logging.shutdown()
        os._exit(EXIT_LOST_LEADERSHIP)
    keeper.cancel()
    await elector.release()
    error = operator.exception()
    if error is not None:
        # Kopf itself failed: exit non-zero (a crash the kubelet restarts and reports), never
        # 0, which reads as a clean shutdown and showed the pod "Completed".
        raise error
    return 0


async def _run_kopf(options: OperatorOptions, stop: asyncio.Event) -> None:
    from lockstep.controller import handlers

    handlers.streaming_lists = await _streams_lists(options.namespaces)
    compacting = asyncio.create_task(memory.keep_compact(handlers.cache))
    try:
        await kopf.operator(
            memories=handlers.ForgetfulMemories(),
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            stop_flag=stop,
            # Without one Kopf derives it from getpass.getuser(), which raises KeyError in the
            # image: the chart's runAsUser (65532) has no passwd entry (found on the real kubelet).
            identity=peering.Identity(identity()),
        )
    finally:
        compacting.cancel()


PROBE_RETRY_SECONDS = 2.0


async def _streams_lists(namespaces: tuple[str, ...]) -> bool:
    """Ask the API server whether it streams a watch's initial list (ADR 0015, point 8); while it
    cannot answer (restarting, unreachable), ask again: nothing is watched before it does."""
    first_namespace = namespaces[0] if namespaces else None
    while True:
        try:
            streams = await asyncio.to_thread(kube.serves_streaming_lists, first_namespace)
        except kube.KubeError as error:
            log.warning("%s; asking again in %.0f s", error, PROBE_RETRY_SECONDS)
            await asyncio.sleep(PROBE_RETRY_SECONDS)
            continue
        log.info(
            "watches list by %s",
            "streaming (the API server sends initial events)"
            if streams
            else "one unpaged list each (the API server does not stream lists)",
        )
        return streams


async def _first(wanted: Awaitable[object], other: Awaitable[object]) -> bool:
    """Await two coroutines; True only if `wanted` finished first *and* succeeded."""
    first = asyncio.ensure_future(wanted)
    second = asyncio.ensure_future(other)
    done, pending = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if first not in done:
        return False
    error = first.exception()
    if error is not None:
        raise error  # a bug, not a lost election: surface it
    return True
