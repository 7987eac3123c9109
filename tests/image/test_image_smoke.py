"""The real image, run the way a cluster runs it: a read-only root, user 65532, no capabilities,
no privilege escalation, /tmp as the only writable place, and a network that reaches the test
PostgreSQL and nothing else. The command lines come from :mod:`lockstep.contract`, as the
operator writes them into Jobs, and each container's report is read from the termination-log
file the kubelet would mount.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import tarfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import dbtest
import imagetest
from lockstep import __version__, constants, database
from lockstep.contract import helper_args, migration_args
from lockstep.contract import report as reports
from lockstep.jobs import containers
from lockstep.pod import lock

pytestmark = pytest.mark.image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SQL_SHOP = FIXTURES / "sql" / "shop"
ALEMBIC_SHOP = FIXTURES / "alembic" / "shop"
SOURCE = Path(constants.SOURCE_MOUNT_PATH)
PROBE_DEADLINE_SECONDS = 60.0
LAYOUT_FILES = ("oci-layout", "index.json")


def report_of(pod: imagetest.Pod, container: str = "migrate") -> reports.Report:
    text = pod.termination_log(container).read_text()
    parsed = reports.parse(text)
    assert parsed, f"no JSON report in the termination log: {text!r}"
    return parsed


def test_the_image_is_configured_as_the_chart_and_jobs_expect(podman: imagetest.Podman) -> None:
    config = json.loads(podman("image", "inspect", podman.image, check=True).stdout)[0]["Config"]
    assert config["User"] == imagetest.RUNNER_USER  # numeric: runAsNonRoot checks it as is
    assert config["Entrypoint"] == ["lockstep"]
    assert config["Cmd"] == ["operator"]
    # The OCI archive `ctr images import` reads: a layout whose index names this image.
    with tarfile.open(podman.archive) as archive:
        layout, index = (json.load(archive.extractfile(n) or io.BytesIO()) for n in LAYOUT_FILES)
    assert layout["imageLayoutVersion"] == "1.0.0"
    names = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in index["manifests"]
    ]
    assert any(name and podman.image.endswith(name) for name in names), names


def test_version_and_help_run_as_the_image_user_on_a_read_only_root(
    podman: imagetest.Podman,
) -> None:
    # No --user here: the image's own USER must apply.
    base = ["run", "--rm", "--read-only", "--read-only-tmpfs=false", "--network", "none"]
    version = podman(*base, podman.image, "--version", check=True)
    assert version.stdout.strip() == f"lockstep {__version__}"
    who = podman(
        *base, "--entrypoint", "python3", podman.image, "-c",
        "import os, sys; print(os.getuid(), os.getgid(), sys.flags.dont_write_bytecode)",
        check=True,
    )  # fmt: skip
    assert who.stdout.split() == ["65532", "65532", "1"]
    helped = podman(*base, podman.image, "--help", check=True).stdout
    for command in ("operator", "run", "plan", "lock", "classify", "dburl", "wait"):
        assert command in helped


def test_the_container_reaches_the_database_and_nothing_else(pod: imagetest.Pod) -> None:
    # A port the host listens on for everyone: the network namespace must still not reach it.
    with socket.create_server(("0.0.0.0", 0)) as other:  # noqa: S104 - the point of the test
        other_port = other.getsockname()[1]
        db_port = sa.engine.make_url(pod.database_url).port
        script = (
            "import socket, sys\n"
            "def reach(host, port):\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=2).close()\n"
            "        return 'open'\n"
            "    except OSError as error:\n"
            "        return type(error).__name__\n"
            f"print(reach({pod.net.host_ip!r}, {db_port}))\n"
            f"print(reach({pod.net.host_ip!r}, {other_port}))\n"
            "print(reach('1.1.1.1', 443))\n"
        )
        result = pod.run(["python3", "-c", script])
    assert result.returncode == 0, result.stderr
    database_port, other_host_port, internet = result.stdout.split()
    assert database_port == "open"
    assert other_host_port in {"TimeoutError", "ConnectionRefusedError"}
    assert internet == "OSError"  # no route at all: "Network is unreachable"


def test_run_sql_behind_the_lock_sidecar_as_a_job_pod_runs_it(
    pod: imagetest.Pod, database: tuple[str, str]
) -> None:
    host_url = database[0]
    sidecar = imagetest.unique_name("lock")
    ready = Path(containers.LOCK_READY_FILE)
    pod.start(
        sidecar,
        helper_args.LockArgs(wait_seconds=30, ready_file=ready).to_argv(),
        tmpfs=[containers.LOCK_DIR],
    )
    wait_for_probe(pod, sidecar)

    # The migrate container's command, as `containers.runner_command` writes it for a Job.
    run = migration_args.RunArgs(
        tool="sql", source=SOURCE, target="head", lock_wait_seconds=30, no_lock=True
    )
    result = pod.run(run.to_argv(), source=SQL_SHOP)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = report_of(pod)
    assert outcome["result"] == "Succeeded"
    assert outcome["appliedCount"] == 3
    assert {"customers", "orders", "migration_log"} <= dbtest.tables(host_url)
    assert "email" in dbtest.column_names(host_url, "customers")

    stopped = stop(pod, sidecar)
    assert stopped["exit"] == 0, stopped["logs"]
    assert "releasing the migration lock" in stopped["logs"]


def test_lock_holds_until_sigterm_then_releases(
    pod: imagetest.Pod, database: tuple[str, str]
) -> None:
    host_url = database[0]
    sidecar = imagetest.unique_name("lock")
    pod.start(
        sidecar,
        helper_args.LockArgs(wait_seconds=30).to_argv(),
        tmpfs=[containers.LOCK_DIR],
    )
    wait_for_probe(pod, sidecar)
    with pytest.raises(lock.LockTimeout):
        take_lock(host_url, wait_seconds=1)

    stopped = stop(pod, sidecar)  # podman stop: SIGTERM, as the kubelet stops a sidecar
    assert stopped["exit"] == 0, stopped["logs"]
    assert stopped["seconds"] < 10, "the sidecar ignored SIGTERM and was killed"
    take_lock(host_url, wait_seconds=5)


def test_run_alembic_takes_its_own_lock_and_migrates(
    pod: imagetest.Pod, database: tuple[str, str]
) -> None:
    run = migration_args.RunArgs(tool="alembic", source=SOURCE, lock_wait_seconds=30)
    result = pod.run(run.to_argv(), source=ALEMBIC_SHOP)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = report_of(pod)
    assert outcome["result"] == "Succeeded", outcome
    assert outcome["tool"] == "alembic"
    host_url = database[0]
    assert {"customers", "orders", "alembic_version"} <= dbtest.tables(host_url)
    assert dbtest.scalar(host_url, "SELECT version_num FROM alembic_version") == "a1000003"


def test_run_sql_on_mariadb_through_pymysql(
    pod: imagetest.Pod, image_mariadb: tuple[str, int]
) -> None:
    admin_url, port = image_mariadb
    with imagetest.fresh_mariadb_database(admin_url, pod.net.host_ip, port) as (here, there):
        on_mariadb = dataclasses.replace(pod, database_url=there)
        run = migration_args.RunArgs(tool="sql", source=SOURCE, lock_wait_seconds=30)
        result = on_mariadb.run(run.to_argv(), source=SQL_SHOP)
        assert result.returncode == 0, result.stdout + result.stderr
        assert report_of(pod)["appliedCount"] == 3
        assert {"customers", "orders", "lockstep_schema_history"} <= dbtest.tables(here)


def test_plan_reports_the_sql_a_run_would_execute(
    pod: imagetest.Pod, database: tuple[str, str]
) -> None:
    plan = migration_args.PlanArgs(tool="sql", source=SOURCE, salt="spec-hash")
    result = pod.run(plan.to_argv(), source=SQL_SHOP)
    assert result.returncode == 0, result.stdout + result.stderr
    written = report_of(pod)
    assert written["migrations"] == [path.name for path in sorted(SQL_SHOP.glob("V*.sql"))]
    assert written["classification"] == "Additive" and written["destructive"] == []
    assert written["hash"]
    assert json.loads(result.stdout)["hash"] == written["hash"]
    assert dbtest.tables(database[0]) == set()  # read-only: nothing was created


def test_dburl_writes_the_tool_env_file_to_its_memory_volume(pod: imagetest.Pod) -> None:
    env_file = Path(containers.ENV_FILE)
    argv = helper_args.DburlArgs(format="flyway", out=env_file).to_argv()
    script = f"{' '.join(argv)} && cat {env_file}"
    result = pod.run(["sh", "-c", script], tmpfs=[containers.ENV_DIR])
    assert result.returncode == 0, result.stderr
    assert f"export FLYWAY_URL='jdbc:postgresql://{pod.net.host_ip}:" in result.stdout
    assert "export FLYWAY_USER=lockstep" in result.stdout


def test_operator_without_a_cluster_says_so_and_exits(pod: imagetest.Pod) -> None:
    result = pod.run(["lockstep", "operator"], timeout=60)
    assert result.returncode == 2
    assert "cannot reach a Kubernetes API server" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- helpers


def wait_for_probe(pod: imagetest.Pod, container: str) -> None:
    """The sidecar's startup probe, as the kubelet runs it: `lockstep lock --probe` via exec."""
    probe = helper_args.LockArgs(probe=True, ready_file=Path(containers.LOCK_READY_FILE))
    deadline = time.monotonic() + PROBE_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if pod.podman("exec", container, *probe.to_argv()).returncode == 0:
            return
        state = pod.podman("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state != "running":
            logs = pod.podman("logs", container).stdout
            raise AssertionError(f"the lock sidecar is {state}: {logs}")
        time.sleep(0.5)
    raise AssertionError(f"the lock sidecar's probe never passed: {pod.podman('logs', container)}")


def stop(pod: imagetest.Pod, container: str) -> dict[str, object]:
    started = time.monotonic()
    pod.podman("stop", "--time", "30", container, check=True)
    seconds = time.monotonic() - started
    code = pod.podman("inspect", "--format", "{{.State.ExitCode}}", container, check=True)
    logs = pod.podman("logs", container)
    pod.podman("rm", container, check=True)
    pod.started.remove(container)
    return {"exit": int(code.stdout), "logs": logs.stdout + logs.stderr, "seconds": seconds}


def take_lock(url: str, wait_seconds: float) -> None:
    """Take and release the migration lock from the host, as another run would."""
    engine = database.make_engine(url)
    try:
        identity = database.identity_from_url(url)
        with (
            engine.connect() as connection,
            lock.hold_advisory_lock(connection, identity, wait_seconds),
        ):
            pass
    finally:
        engine.dispose()
