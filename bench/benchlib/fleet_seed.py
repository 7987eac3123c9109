"""Seeding the fleet bench: settled DatabaseMigrations with 5 finished releases each.

Everything goes through the API: the migration, then per release a Job (finished in its status;
`spec.managedBy` keeps the Job controller away) and its pod (the terminated container statuses a
kubelet reports, the runner's JSON report as the migrate container's message), then a status
that records the releases, the newest for the current spec hash (what a settled migration's
status says). Nothing runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from latency import quickstart_files

from benchlib import fleet_shards, pod_status
from benchlib.bed import Bed
from benchlib.common import log, run_in_threads
from benchlib.kube import create_migration, ensure_namespace, migration_body
from lockstep import constants
from lockstep.controller.gather import database_key
from lockstep.jobs import naming
from lockstep.model import content_digest, spec_hash
from testbed import kubetest
from testbed.kubeapi import ApiError, KubeAPI, now_rfc3339

RELEASES = 5
PER_NAMESPACE = 100
# Requests in flight while seeding: the API server, not the seeder, is the limit on 2 cores
# (one migration is ~22 sequential requests; 12 in flight seeded 3,000 in 580 s on a loaded
# machine). Each thread has a connection of its own (a pool smaller than this reconnects).
SEED_THREADS = 32
MANAGED_BY = "bench.lockstep.dev/seeder"  # the Job controller leaves these Jobs alone
CONFIG_MAP = "shop-migrations"
# The node the seeded pods are bound to. It must exist: the pod garbage collector force-deletes
# pods bound to a node that does not (it emptied a 10,000-migration run). Nothing runs on it.
SEED_NODE = "lockstep-fleet-nowhere"


def namespaces_of(size: int) -> list[str]:
    return [f"fleet-{size}-{j:02d}" for j in range(max(1, size // PER_NAMESPACE))]


def seed(bed: Bed, size: int, threads: int = SEED_THREADS) -> list[tuple[str, str, str]]:
    """N settled migrations with 5 finished releases each; (namespace, name, newest Job)."""
    kube = KubeAPI(bed.kubeconfig, pool=threads)
    files = quickstart_files()
    digest = content_digest(files)
    namespaces = namespaces_of(size)
    count = len(namespaces)
    names = {
        ns: [f"m-{i:05d}" for i in range(size) if i % count == k] for k, ns in enumerate(namespaces)
    }

    def namespace_work(namespace: str) -> None:
        ensure_namespace(bed.api, namespace, {"bench.lockstep.dev/stage": "fleet"})
        _wait_for_service_account(bed, namespace)
        urls = {n: f"sqlite:////var/lib/fleet/{namespace}/{n}.sqlite" for n in names[namespace]}
        kubetest.create_secret(bed.api, namespace, "db", urls)
        kubetest.create_config_map(bed.api, namespace, CONFIG_MAP, files)

    _ensure_seed_node(kube)
    run_in_threads([lambda ns=ns: namespace_work(ns) for ns in namespaces])
    newest: list[tuple[str, str, str]] = []

    def migration_work(namespace: str, name: str) -> None:
        body = migration_body(name, CONFIG_MAP, "db", name, "sqlite", "operator")
        body["metadata"]["labels"][fleet_shards.SHARD_LABEL] = fleet_shards.shard_of(int(name[2:]))
        # The POST's answer is the stored object, API server defaults applied.
        created = create_migration(kube, namespace, body)
        # The hash of the stored spec (API server defaults applied): what the operator computes.
        current = spec_hash(created["spec"], {"source": digest})
        earlier = [hashlib.sha256(f"{current}/{r}".encode()).hexdigest() for r in range(RELEASES)]
        hashes = [*[h for h in earlier if h[:8] != current[:8]][: RELEASES - 1], current]
        runs = [_release(kube, namespace, name, created, h, r) for r, h in enumerate(hashes)]
        status = {
            "observedGeneration": created["metadata"].get("generation", 1),
            "specHash": current,
            "targetRevision": "head",
            "appliedRevision": "2",
            "failures": 0,
            "pendingCount": 0,
            "lastRun": runs[-1],
            "history": runs[::-1],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "database is at revision 2",
                    "lastTransitionTime": now_rfc3339(),
                    "observedGeneration": created["metadata"].get("generation", 1),
                },
            ],
        }
        kube.patch(
            _migration_path(namespace, name, "status"), {"status": status}, patch_type="merge"
        )
        newest.append((namespace, name, str(runs[-1]["job"])))

    started = time.monotonic()
    run_in_threads(
        [lambda ns=ns, n=n: migration_work(ns, n) for ns in namespaces for n in names[ns]],
        threads=threads,
    )
    seconds = time.monotonic() - started
    log(
        f"fleet {size}: seeded {size} migrations x {RELEASES} releases in {seconds:.0f}s "
        f"({size / seconds:.1f} migrations/s, {threads} in flight)"
    )
    return newest


def _release(
    kube: KubeAPI, namespace: str, name: str, owner: dict[str, Any], hashed: str, attempt_at: int
) -> dict[str, Any]:
    """One past release: its finished Job and pod; returns the run status records for it."""
    who = naming.Owner(name, namespace, owner["metadata"]["uid"])
    job_name = naming.job_name(name, hashed, 0)
    # As a shard's operator makes them (ADR 0020): the Job and its pod carry the shard label.
    shard = {fleet_shards.SHARD_LABEL: owner["metadata"]["labels"][fleet_shards.SHARD_LABEL]}
    labels = {
        **naming.job_labels(
            who,
            hashed,
            database_key(f"sqlite:////var/lib/fleet/{namespace}/{name}.sqlite") or "unknown",
            shard,
        ),
        constants.LABEL_ATTEMPT: "0",
        constants.LABEL_DIRECTION: "up",
        constants.LABEL_PHASE: constants.PHASE_MIGRATE,
    }
    pod_labels = {**naming.job_labels(who, hashed, "x", shard), "job-name": job_name}
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "initContainers": [
            {
                "name": constants.LOCK_CONTAINER,
                "image": "lockstep:dev",
                "command": ["lockstep", "lock"],
            }
        ],
        "containers": [
            {
                "name": constants.MIGRATE_CONTAINER,
                "image": "lockstep:dev",
                "command": ["lockstep", "run"],
            }
        ],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "labels": labels,
            "ownerReferences": [naming.owner_reference(who)],
        },
        "spec": {
            "managedBy": MANAGED_BY,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": dict(pod_labels)}, "spec": pod_spec},
        },
    }
    made = kube.post(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    day = f"2026-0{1 + attempt_at}-01T00:00"
    start, end = f"{day}:00Z", f"{day}:09Z"
    done = [
        {"type": t, "status": "True", "lastTransitionTime": end}
        for t in ("SuccessCriteriaMet", "Complete")
    ]
    job_status = {"startTime": start, "completionTime": end, "succeeded": 1, "conditions": done}
    kube.patch(
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name}/status",
        {"status": job_status},
        patch_type="merge",
    )
    owner_ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "uid": made["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job_name}-x", "labels": pod_labels, "ownerReferences": [owner_ref]},
        "spec": {**pod_spec, "nodeName": SEED_NODE},
    }
    kube.post(f"/api/v1/namespaces/{namespace}/pods", pod)

    def terminated(container: str, message: str | None) -> dict[str, Any]:
        return pod_status.terminated(container, "lockstep:dev", start, end, message)

    report = json.dumps({"applied": ["1", "2"], "from": None, "to": "2"})
    finished = {
        "phase": "Succeeded",
        "startTime": start,
        "initContainerStatuses": [terminated(constants.LOCK_CONTAINER, None)],
        "containerStatuses": [terminated(constants.MIGRATE_CONTAINER, report)],
    }
    kube.patch(
        f"/api/v1/namespaces/{namespace}/pods/{job_name}-x/status",
        {"status": finished},
        patch_type="merge",
    )
    return {
        "job": job_name,
        "direction": "Upgrade",
        "result": "Succeeded",
        "reason": "Succeeded",
        "message": "applied 1, 2",
        "specHash": hashed[:8],
        "finishedAt": end,
        "startedAt": start,
        "durationSeconds": 9.0,
        "to": "2",
    }


def _migration_path(namespace: str, name: str, sub: str = "") -> str:
    group = f"/apis/{constants.GROUP}/{constants.VERSION}"
    path = f"{group}/namespaces/{namespace}/{constants.PLURAL}/{name}"
    return f"{path}/{sub}" if sub else path


def _wait_for_service_account(bed: Bed, namespace: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            bed.kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _ensure_seed_node(kube: KubeAPI) -> None:
    """The Node object the seeded pods name (no kubelet behind it, so no pod ever runs there)."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": SEED_NODE}}
    try:
        kube.post("/api/v1/nodes", node)
    except ApiError as error:
        if error.status != 409:  # 409: there from an earlier size of the same run
            raise
