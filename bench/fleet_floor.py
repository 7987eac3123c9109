"""The floor of the fleet bench: Kopf watching what Lockstep watches, with handlers that do nothing.

    python bench/fleet_floor.py --counts FILE [--ready-file F]   (KUBECONFIG names the cluster)

DatabaseMigrations, Lockstep's Jobs and their pods, with the same Kopf settings as the operator
(no diff-base copies, no logging of events, paged listings, 0.1 s idle workers, no per-object
records), every handler a no-op. Its RSS and CPU are what
watching a fleet costs before Lockstep keeps or decides anything; the bench prints the operator's
beside them. Every second it writes how many events of each kind it saw to --counts, so the
bench can tell when the listing is through.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import kopf
from kopf._core.reactor import inventory as kopf_inventory

MANAGED = {"app.kubernetes.io/managed-by": "lockstep"}
seen: Counter[str] = Counter()


class _NoDiffBase(kopf.DiffBaseStorage):
    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class _Forgetful(kopf_inventory.ResourceMemories):
    async def recall(self, raw_body: Any, **kwargs: Any) -> Any:
        return await super().recall(raw_body, **{**kwargs, "ephemeral": True})


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = None  # lockstep.controller.handlers.LIST_CHUNK
    # lockstep.controller.handlers.streaming_lists: the test bed (Kubernetes 1.35) streams them
    settings.watching.initial_streaming = True
    settings.queueing.idle_timeout = 0.1  # lockstep.controller.handlers.WORKER_IDLE_SECONDS
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


@kopf.on.event("lockstep.dev", "v1alpha1", "databasemigrations")
async def migration(**_: Any) -> None:
    seen["migrations"] += 1


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job(**_: Any) -> None:
    seen["jobs"] += 1


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod(**_: Any) -> None:
    seen["pods"] += 1


async def report(path: Path) -> None:
    while True:
        path.write_text(json.dumps(seen))
        await asyncio.sleep(1.0)


async def main(path: Path, ready: Path | None) -> None:
    reporter = asyncio.create_task(report(path))
    if ready is not None:
        ready.write_text("ready\n")
    try:
        # The operator's ForgetfulMemories, not imported: importing the handlers module would
        # register the operator's handlers in this process.
        await kopf.operator(standalone=True, clusterwide=True, memories=_Forgetful())
    finally:
        reporter.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path)
    logging.basicConfig(level=logging.WARNING)
    args = parser.parse_args()
    asyncio.run(main(args.counts, args.ready_file))
