"""The cache's indices (Jobs by migration and database, pods by Job, app pods and waiting
migrations) follow put, replace with changed labels, and drop; slim bodies keep what the
readers read."""

from __future__ import annotations

from typing import Any

from lockstep import constants, gate
from lockstep.controller import cluster_facts
from lockstep.controller.cache import Cache

LOCK = constants.LOCK_CONTAINER


def job(name: str, migration: str, database: str, *, ns: str = "ns", done: bool = False,
        phase: str = constants.PHASE_MIGRATE) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"startTime": "2026-01-01T00:00:00Z"}
    if done:
        status["conditions"] = [{"type": "Complete", "status": "True", "reason": "Done"}]
        status["completionTime"] = "2026-01-01T00:01:00Z"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                constants.LABEL_MIGRATION: migration,
                constants.LABEL_DATABASE: database,
                constants.LABEL_SPEC_HASH: "abcd1234",
                constants.LABEL_ATTEMPT: "1",
                constants.LABEL_PHASE: phase,
            },
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:x": {}}}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "migrate", "env": []}]}}},
        "status": status,
    }


def pod(name: str, job_name: str, created: str, *, ns: str = "ns") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": created,
            "labels": {"job-name": job_name},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {
            "initContainers": [
                {"name": "rehearse-1-up", "command": ["lockstep", "run"], "env": [{"name": "X"}]},
                {"name": LOCK, "command": ["lockstep", "lock"]},
            ],
            "containers": [{"name": "migrate", "image": "runner"}],
        },
        "status": {
            "initContainerStatuses": [
                {
                    "name": "rehearse-1-up",
                    "imageID": "sha256:…",
                    "state": {"terminated": {"exitCode": 1, "message": "boom"}},
                },
                {
                    "name": LOCK,
                    "started": False,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                },
            ],
            "containerStatuses": [
                {"name": "migrate", "state": {"terminated": {"exitCode": 0, "message": "{}"}}}
            ],
        },
    }


def names(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["metadata"]["name"] for b in bodies]


def test_jobs_are_found_by_migration_and_by_database() -> None:
    cache = Cache()
    cache.put_job(job("a-1", "a", "db1"))
    cache.put_job(job("a-0", "a", "db1", done=True))
    cache.put_job(job("b-0", "b", "db1"))
    cache.put_job(job("c-0", "c", "db2"))
    cache.put_job(job("a-x", "a", "db1", ns="other"))
    assert names(cache.jobs_of(("ns", "a"))) == ["a-0", "a-1"]
    assert names(cache.jobs_of(("other", "a"))) == ["a-x"]
    assert names(cache.jobs_of(("ns", "nobody"))) == []
    # Active only, all namespaces; the finished a-0 no longer holds the database.
    assert names(cache.active_jobs_on_database("db1")) == ["a-1", "b-0", "a-x"]
    assert names(cache.others_on_database("db1", ("ns", "a"))) == ["b-0", "a-x"]
    assert names(cache.others_on_database("db2", ("ns", "a"))) == ["c-0"]


def test_a_plan_job_does_not_hold_the_database() -> None:
    cache = Cache()
    cache.put_job(job("a-p0", "a", "db1", phase=constants.PHASE_PLAN))
    assert cache.active_jobs_on_database("db1") == []
    assert names(cache.jobs_of(("ns", "a"))) == ["a-p0"]


def test_a_replaced_job_moves_between_groups_when_its_labels_change() -> None:
    cache = Cache()
    cache.put_job(job("j", "a", "db1"))
    cache.put_job(job("j", "b", "db2"))  # same key, new labels
    assert cache.jobs_of(("ns", "a")) == []
    assert names(cache.jobs_of(("ns", "b"))) == ["j"]
    assert cache.active_jobs_on_database("db1") == []
    assert names(cache.active_jobs_on_database("db2")) == ["j"]
    cache.put_job(job("j", "b", "db2", done=True))  # same labels, new status
    assert cache.active_jobs_on_database("db2") == []
    assert cluster_facts.job_view(cache.jobs_of(("ns", "b"))[0]).state == "Succeeded"


def test_a_dropped_job_leaves_every_index() -> None:
    cache = Cache()
    cache.put_job(job("j", "a", "db1"))
    cache.drop_job(("ns", "j"))
    cache.drop_job(("ns", "j"))  # a second DELETED is harmless
    assert cache.jobs_of(("ns", "a")) == []
    assert cache.active_jobs_on_database("db1") == []
    assert len(cache._jobs_by_migration) == 0 and len(cache._jobs_by_database) == 0
    assert cache.sizes()["jobs"] == 0


def test_the_newest_pod_of_a_job_and_pods_that_go() -> None:
    cache = Cache()
    cache.put_pod(pod("p-old", "j", "2026-01-01T00:00:00Z"))
    cache.put_pod(pod("p-new", "j", "2026-01-01T00:05:00Z"))
    cache.put_pod(pod("q", "k", "2026-01-01T00:09:00Z"))
    cache.put_pod(pod("p-other-ns", "j", "2026-01-01T00:09:00Z", ns="other"))
    found = cache.pod_of_job("ns", "j")
    assert found is not None and found["metadata"]["name"] == "p-new"
    cache.drop_pod(("ns", "p-new"))
    found = cache.pod_of_job("ns", "j")
    assert found is not None and found["metadata"]["name"] == "p-old"
    moved = pod("p-old", "k", "2026-01-01T00:00:00Z")  # relabelled: now k's (older) pod
    cache.put_pod(moved)
    assert cache.pod_of_job("ns", "j") is None
    found = cache.pod_of_job("ns", "k")
    assert found is not None and found["metadata"]["name"] == "q"


def test_migrations_a_finished_job_may_unblock() -> None:
    cache = Cache()
    for name in ("a", "b", "w", "x"):
        cache.put_migration({"metadata": {"name": name, "namespace": "ns"}, "spec": {}})
    cache.put_job(job("a-0", "a", "db1"))  # a runs: its own Job event wakes it, not this
    waiting = {"conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForJob"}]}
    cache.update_status(("ns", "w"), waiting)
    cache.update_status(("ns", "x"), waiting)
    cache.note_database(("ns", "x"), "db2")
    # w's database is not known yet: woken by any database's Job; x only by db2's.
    assert list(cache.migrations_on_database("db1")) == [("ns", "w")]
    assert list(cache.migrations_on_database("db2")) == [("ns", "w"), ("ns", "x")]
    cache.note_database(("ns", "w"), "db2")
    assert list(cache.migrations_on_database("db1")) == []
    cache.update_status(("ns", "w"), {"conditions": []})  # no longer waiting
    assert list(cache.migrations_on_database("db2")) == [("ns", "x")]
    cache.put_migration({"metadata": {"name": "b", "namespace": "ns"}, "status": waiting})
    assert list(cache.migrations_on_database("db9")) == [("ns", "b")]
    cache.drop_migration(("ns", "b"))
    cache.drop_migration(("ns", "x"))
    assert list(cache.migrations_on_database("db2")) == []
    cache.note_database(("ns", "gone"), "db2")  # a migration not cached is not remembered
    assert ("ns", "gone") not in cache._database_of


def test_app_pods_waiting_for_a_migration() -> None:
    cache = Cache()

    def app(name: str, waits_for: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "ns",
                "labels": {gate.WAIT_FOR_LABEL: waits_for},
            },
            "spec": {
                "schedulingGates": [{"name": gate.GATE}],
                "containers": [{"name": "app", "image": "shop:2", "env": [{"name": "A"}]}],
            },
            "status": {"phase": "Pending"},
        }

    cache.put_app_pod(app("web-1", "shop"))
    cache.put_app_pod(app("web-2", "shop"))
    cache.put_app_pod(app("api-1", "api"))
    assert names(cache.app_pods_waiting_for(("ns", "shop"))) == ["web-1", "web-2"]
    cache.put_app_pod(app("web-2", "api"))
    assert names(cache.app_pods_waiting_for(("ns", "shop"))) == ["web-1"]
    cache.drop_app_pod(("ns", "web-1"))
    assert cache.app_pods_waiting_for(("ns", "shop")) == []
    (kept,) = [
        p for p in cache.app_pods_waiting_for(("ns", "api")) if p["metadata"]["name"] == "api-1"
    ]
    assert gate.has_gate(kept) and gate.pod_image(kept) == "shop:2"
    assert "status" not in kept and "env" not in kept["spec"]["containers"][0]


def test_slim_bodies_keep_what_the_readers_read_and_drop_the_rest() -> None:
    cache = Cache()
    cache.put_job(job("j", "a", "db1", done=True))
    cache.put_pod(pod("p", "j", "2026-01-01T00:00:00Z"))
    kept_job = cache.job(("ns", "j"))
    assert kept_job is not None
    assert "spec" not in kept_job and "managedFields" not in kept_job["metadata"]
    view = cluster_facts.job_view(kept_job)
    assert (view.state, view.spec_hash, view.attempt) == ("Succeeded", "abcd1234", 1)
    assert view.finished_at is not None and view.started_at is not None
    kept_pod = cache.pod_of_job("ns", "j")
    assert kept_pod is not None and "managedFields" not in kept_pod["metadata"]
    assert "containers" not in kept_pod["spec"]
    wait = cluster_facts.lock_wait(kept_pod, "j")
    assert wait is not None and not wait.timed_out and wait.since is not None
    step = cluster_facts.failed_rehearsal_step(kept_pod)
    assert step is not None and step.command == "lockstep run" and step.message == "boom"
    assert cluster_facts.termination_message(kept_pod, "migrate") == "{}"
    assert cluster_facts.container_terminated(kept_pod, "migrate")
