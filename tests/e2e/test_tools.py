"""Every migration tool's example, run by the real tool through the operator.

Each ``examples/<tool>-<engine>/migration.yaml`` is applied as a user would
apply it, with its Secret pointed at a fresh database; its image
(``lockstep-examples/<folder>:1``) is the example folder with the real tool
(on the local pod agent: the toolchains of ``tools/toolchains/install.sh``,
mapped by ``tools/testbed/images.yaml``; on a ``KUBECONFIG`` cluster: the
image built from the folder's Dockerfile).  After each step the revision the
operator reports is checked against the tool's own version table.

Rolling back one step lowers ``spec.target`` *and* moves ``spec.image`` back to
an older tag, as a git revert would: the down migrations exist only in the
newer image, so the downgrade Job must run the image recorded for the newer
revision, not the one now in the spec.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from kubernetes import client
from sqlalchemy.engine import make_url

from lockstep import database, tools, version_tables
from testbed import kubetest
from testbed.kubetest import REPO, wait_for
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "examples"
# Generous: JVM and Node start-up, Prisma's WebAssembly engine (~12 s for a deploy),
# all on a 2-core machine that may run other tests at the same time.
RUN_TIMEOUT = 300.0
# How long a refusal (no Job) must hold before the test believes it.
NO_JOB_GRACE_SECONDS = 3.0
OLDER_TAG = "0"  # the image tag a rollback in git would go back to
DATABASE_FIXTURES = {"postgresql": "pg_url", "mariadb": "mariadb_url", "mysql": "mariadb_url"}


@dataclass(frozen=True)
class Example:
    folder: str
    head: str  # the revision the tool records after both migrations
    previous: str  # one step back: the target of the rollback
    can_downgrade: bool

    @property
    def path(self) -> Path:
        return EXAMPLES / self.folder


EXAMPLE_CASES = [
    Example("flyway-postgresql", "2", "1", can_downgrade=False),
    Example("flyway-mariadb", "2", "1", can_downgrade=False),
    Example(
        "knex-postgresql",
        "20240102120000_create_orders.js",
        "20240101120000_create_customers.js",
        can_downgrade=True,
    ),
    Example(
        "sequelize-mariadb",
        "20240102120000-create-orders.js",
        "20240101120000-create-customers.js",
        can_downgrade=True,
    ),
    Example(
        "prisma-postgresql",
        "20240102120000_create_orders",
        "20240101120000_create_customers",
        can_downgrade=False,
    ),
    Example(
        "django-postgresql", "shop:0002_create_orders", "shop:0001_initial", can_downgrade=True
    ),
    Example("alembic-postgresql", "0002", "0001", can_downgrade=True),
]
KNEX = next(e for e in EXAMPLE_CASES if e.folder == "knex-postgresql")


# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Applied:
    """One example, applied in the test's namespace."""

    name: str
    tool: str
    image: str
    url: str  # the database URL the Secret holds, in the scheme the tool wants


def example_documents(example: Example) -> list[dict[str, Any]]:
    text = (example.path / "migration.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def migration_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == "DatabaseMigration"]
    return found


def with_scheme_of(placeholder: str, url: str) -> str:
    """``url`` (the test database) in the scheme of the example's placeholder URL.

    The placeholder says what the tool wants: Flyway's MariaDB driver takes
    ``mariadb://`` (``jdbc:mariadb:``) only, Sequelize picks its dialect from
    ``mysql://``.
    """
    scheme = make_url(placeholder).drivername
    return make_url(url).set(drivername=scheme).render_as_string(hide_password=False)


def apply_example(
    api: client.ApiClient,
    namespace: str,
    example: Example,
    request: pytest.FixtureRequest,
    *,
    downgrade: str | None = None,
) -> Applied:
    """Create the example's Secret (pointed at a fresh database) and DatabaseMigration.

    ``downgrade`` overrides the example's ``spec.downgrade`` (``"Forbid"``
    removes it: Forbid is the default).
    """
    documents = example_documents(example)
    migration = migration_of(documents)
    spec = migration["spec"]
    fresh_url: str = request.getfixturevalue(DATABASE_FIXTURES[spec["database"]["engine"]])
    url = fresh_url
    for document in documents:
        document.get("metadata", {}).pop("namespace", None)
        if document["kind"] == "Secret":
            assert document["metadata"]["name"] == spec["database"]["urlSecretRef"]["name"]
            key = spec["database"]["urlSecretRef"]["key"]
            url = with_scheme_of(document["stringData"][key], fresh_url)
            document["stringData"] = {key: url}
    if downgrade == "Forbid":
        spec.pop("downgrade", None)
    elif downgrade is not None:
        spec["downgrade"] = downgrade
    kubetest.create_objects(api, namespace, documents)
    return Applied(migration["metadata"]["name"], spec["tool"], spec["image"], url)


def read_revision(applied: Applied) -> str | None:
    """The revision in the database, read with the adapter's own reader."""
    engine = database.make_engine(applied.url)
    try:
        with engine.connect() as connection:
            return version_tables.read_applied_revision(applied.tool, connection)
    finally:
        engine.dispose()


def tables(applied: Applied) -> set[str]:
    engine = database.make_engine(applied.url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def older_image(image: str) -> str:
    """``repo:1`` -> ``repo:0``: the tag a revert in git would put back."""
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}:{OLDER_TAG}"


def job_names(api: client.ApiClient, namespace: str, name: str) -> set[str]:
    return {
        str(job.metadata.name) for job in kubetest.jobs_of(api, namespace, name) if job.metadata
    }


def migrate_image(job: client.V1Job) -> str:
    pod = job.spec.template.spec if job.spec and job.spec.template else None
    images = [str(c.image) for c in (pod.containers if pod else []) if c.name == "migrate"]
    assert len(images) == 1, f"job {job.metadata and job.metadata.name}: {images!r}"
    return images[0]


def wait_for_generation(
    api: client.ApiClient,
    namespace: str,
    name: str,
    generation: int,
    kind: str,
    status: str,
    reason: str,
    timeout: float = RUN_TIMEOUT,
) -> dict[str, Any]:
    """Wait until the operator has observed ``generation`` and condition ``kind`` says so.

    A condition of the previous generation (Ready=True after the first run)
    must not count as the answer to the new spec.
    """

    def probe() -> dict[str, Any] | None:
        body = kubetest.get_migration(api, namespace, name)
        found = kubetest.condition(body, kind)
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed != generation or found is None:
            return None
        if found.get("status") != status or found.get("reason") != reason:
            return None
        return body

    return wait_for(
        f"{namespace}/{name} generation {generation}: {kind}={status} ({reason})",
        probe,
        timeout=timeout,
        interval=0.5,
    )


def wait_ready(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return kubetest.wait_ready(api, namespace, name, timeout=RUN_TIMEOUT)


def kubectl_row(kubectl: Path, kubeconfig: Path, namespace: str, name: str) -> dict[str, str]:
    """``kubectl get dbm NAME`` as {column: value}."""
    table = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", "dbm", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    header, row = table.splitlines()[:2]
    return dict(zip(header.split(), row.split(), strict=True))


def run_for(status: Mapping[str, Any], revision: str) -> dict[str, Any]:
    """The newest successful run in ``status.history`` that reached ``revision``."""
    runs = [
        run
        for run in status.get("history") or []
        if run.get("to") == revision and run.get("result") == "Succeeded"
    ]
    assert runs, f"no successful run to {revision!r} in history {status.get('history')!r}"
    return dict(runs[0])


def migrate_to_head(
    api: client.ApiClient,
    namespace: str,
    example: Example,
    request: pytest.FixtureRequest,
    kubectl: Path,
    kubeconfig: Path,
    *,
    downgrade: str | None = None,
) -> tuple[Applied, dict[str, Any]]:
    """Apply the example and check head in the database, the status and `kubectl get dbm`."""
    applied = apply_example(api, namespace, example, request, downgrade=downgrade)
    body = wait_ready(api, namespace, applied.name)
    status = body["status"]
    assert read_revision(applied) == example.head
    assert status["appliedRevision"] == example.head
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert {"customers", "orders"} <= tables(applied)
    (job,) = kubetest.jobs_of(api, namespace, applied.name)
    assert migrate_image(job) == applied.image
    assert run_for(status, example.head)["image"] == applied.image
    row = kubectl_row(kubectl, kubeconfig, namespace, applied.name)
    assert (row["TOOL"], row["TARGET"], row["APPLIED"], row["READY"]) == (
        applied.tool,
        "head",
        example.head,
        "True",
    )
    return applied, body


def lower_target(
    api: client.ApiClient, namespace: str, applied: Applied, example: Example
) -> tuple[int, set[str]]:
    """Lower spec.target one step (and the image to an older tag); the new generation and
    the Jobs that existed before."""
    before = job_names(api, namespace, applied.name)
    patched = kubetest.patch_migration(
        api,
        namespace,
        applied.name,
        {"spec": {"target": example.previous, "image": older_image(applied.image)}},
    )
    return int(patched["metadata"]["generation"]), before


def assert_refused(
    api: client.ApiClient,
    namespace: str,
    applied: Applied,
    example: Example,
    generation: int,
    jobs_before: set[str],
    reason: str,
) -> None:
    """Stalled and not Ready with ``reason``, no new Job, the database still at head."""
    body = wait_for_generation(api, namespace, applied.name, generation, "Stalled", "True", reason)
    ready = kubetest.condition(body, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert kubetest.condition(body, "Reconciling") is None
    time.sleep(NO_JOB_GRACE_SECONDS)
    assert job_names(api, namespace, applied.name) == jobs_before
    body = kubetest.get_migration(api, namespace, applied.name)
    assert kubetest.condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    assert body["status"]["appliedRevision"] == example.head
    assert read_revision(applied) == example.head


def skip_unless_on_the_node(example: Example, node_images: set[str] | None) -> None:
    """The local real node has no registry: only the tool images built here can run."""
    image = f"docker.io/{migration_of(example_documents(example))['spec']['image']}"
    if node_images is not None and image not in node_images:
        pytest.skip(
            f"{image} is not on the real node (no registry): scripts/build-tool-images.sh builds "
            "only the examples with a tools/images/<example>.Containerfile"
        )


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("example", EXAMPLE_CASES, ids=[e.folder for e in EXAMPLE_CASES])
def test_example_migrates_to_head_then_rolls_back_one_step(
    example: Example,
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    toolchains: Path | None,
    kubectl: Path,
    kubeconfig: Path,
    request: pytest.FixtureRequest,
    node_images: set[str] | None,
) -> None:
    skip_unless_on_the_node(example, node_images)
    # Rollback allowed, so a refusal below can only come from the tool itself.
    applied, _ = migrate_to_head(
        k8s, namespace, example, request, kubectl, kubeconfig, downgrade="Allow"
    )
    generation, jobs_before = lower_target(k8s, namespace, applied, example)

    if not example.can_downgrade:
        assert_refused(
            k8s, namespace, applied, example, generation, jobs_before, "DowngradeUnsupported"
        )
        return

    body = wait_for_generation(
        k8s, namespace, applied.name, generation, "Ready", "True", "Succeeded"
    )
    status = body["status"]
    # The run's record says what the operator did (direction, job, log tail) when this fails.
    assert read_revision(applied) == example.previous, f"last run: {status.get('lastRun')!r}"
    assert status["appliedRevision"] == example.previous
    assert "customers" in tables(applied)
    assert "orders" not in tables(applied)
    new_jobs = job_names(k8s, namespace, applied.name) - jobs_before
    new_job = status["lastRun"]["job"]
    assert new_job in new_jobs
    assert status["lastRun"]["direction"] == "Downgrade"
    if tools.get_adapter(applied.tool).order_key(example.previous) is None:
        # Alembic's revisions have no order: the upgrade to the older revision changed nothing
        # (TargetBehind), which is how Lockstep learns that the target is behind.
        probe = status["history"][1]
        assert (probe["direction"], probe["reason"]) == ("Upgrade", "TargetBehind")
        assert new_jobs == {new_job, probe["job"]}
    else:
        assert new_jobs == {new_job}
    # The down migrations are in the image that applied head (:1), not the older one now
    # in the spec (:0).
    newer_image = run_for(status, example.head)["image"]
    assert newer_image == applied.image
    job = client.BatchV1Api(k8s).read_namespaced_job(new_job, namespace)
    assert migrate_image(job) == newer_image
    row = kubectl_row(kubectl, kubeconfig, namespace, applied.name)
    assert (row["TARGET"], row["APPLIED"], row["READY"]) == (
        example.previous,
        example.previous,
        "True",
    )


def test_lowering_the_target_without_downgrade_allow_is_forbidden(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    toolchains: Path | None,
    kubectl: Path,
    kubeconfig: Path,
    request: pytest.FixtureRequest,
    node_images: set[str] | None,
) -> None:
    """Knex could go down, but spec.downgrade is left at its default, Forbid."""
    skip_unless_on_the_node(KNEX, node_images)
    applied, _ = migrate_to_head(
        k8s, namespace, KNEX, request, kubectl, kubeconfig, downgrade="Forbid"
    )
    generation, jobs_before = lower_target(k8s, namespace, applied, KNEX)
    assert_refused(k8s, namespace, applied, KNEX, generation, jobs_before, "DowngradeForbidden")
