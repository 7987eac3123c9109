"""The Lockstep image under test: podman as `make image` set it up, and containers started the
way a migration Job's pod starts them.

`scripts/build-image.sh` is the one source of podman's settings (runc, cgroupfs, vfs storage
under the cache); ``build-image.sh env`` hands them over. A container here gets what the chart
and the Job builder (:mod:`lockstep.jobs.containers`) give it in a cluster: a read-only root, the
numeric user, no capabilities, no privilege escalation, an emptyDir-like /tmp, a termination-log
file the kubelet would mount, and a network that reaches the database and nothing else
(:mod:`testbed.isolated_net`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pymysql
from sqlalchemy.engine import make_url

from lockstep import constants
from lockstep.jobs import containers
from testbed import databases
from testbed.isolated_net import IsolatedNet

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-image.sh"
RUNNER_USER = f"{containers.RUNNER_USER_ID}:{containers.RUNNER_USER_ID}"
# What `lockstep.jobs.containers.container_security_context` asks of every container.
RESTRICTED: tuple[str, ...] = (
    "--read-only",
    "--read-only-tmpfs=false",  # podman's default tmpfs on /run, /var/tmp: a pod has none
    "--user",
    RUNNER_USER,
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--pull",
    "never",
    # The pods' /tmp emptyDir (the migrate container's, the operator's).
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,mode=1777,size=64m",
)
# The image tests' own PostgreSQL, beside the shared test servers: it also listens on the
# isolated network's host address, which the shared one (127.0.0.1 only) must not.
POSTGRES_SUFFIX = "-image-postgresql"
HBA_LINE = "host all all 10.213.0.0/16 scram-sha-256  # lockstep image smoke tests\n"


class BuildFailed(RuntimeError):  # noqa: N818 - reads better at the raise site
    """`scripts/build-image.sh` failed; the message holds its last words."""


@dataclass(frozen=True)
class Podman:
    """podman with `make image`'s settings, and the image it built."""

    image: str
    archive: Path
    env: Mapping[str, str] = field(repr=False)

    def __call__(
        self, *args: str, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {shlex.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


def build() -> Podman:
    """Build the image if its inputs changed since the last build (seconds when they did not)."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise BuildFailed(f"scripts/build-image.sh failed:\n{result.stderr[-3000:]}")
    settings = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "env"], capture_output=True, text=True, check=True
    ).stdout
    values = dict(shlex.split(line)[0].split("=", 1) for line in settings.splitlines() if line)
    return Podman(
        image=values.pop("LOCKSTEP_IMAGE"),
        archive=Path(values.pop("LOCKSTEP_IMAGE_ARCHIVE")),
        env=values,
    )


@dataclass(frozen=True)
class Pod:
    """What the containers of one test's pod share: the network and the database's URL."""

    podman: Podman
    net: IsolatedNet
    database_url: str  # as the container reaches it (the isolated network's host address)
    workdir: Path
    started: list[str] = field(default_factory=list)  # detached containers, removed at the end

    def args(
        self,
        *,
        name: str | None = None,
        source: Path | None = None,
        tmpfs: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        """``podman run`` options of a container of this pod, before the image."""
        log = self.termination_log(name or "migrate")
        log.touch()
        log.chmod(0o666)  # as the kubelet makes it: writable by whatever user the image runs as
        argv = [
            *RESTRICTED,
            "--network",
            f"ns:{self.net.netns_path}",
            "--volume",
            f"{log}:/dev/termination-log:rw",
            "--env",
            f"DATABASE_URL={self.database_url}",
        ]
        if name:
            argv += ["--name", name]
        if source is not None:
            argv += ["--volume", f"{source}:{constants.SOURCE_MOUNT_PATH}:ro"]
        for path in tmpfs:  # the pod's memory-backed emptyDirs (fsGroup makes them writable)
            argv += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777,size=1m"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        return argv

    def run(
        self,
        command: Sequence[str],
        *,
        source: Path | None = None,
        tmpfs: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """Run one container to completion, as a Job's container: ``command`` replaces the
        entrypoint (a Job's ``command`` does; the operator's commands start with `lockstep`)."""
        argv = self.args(source=source, tmpfs=tmpfs, env=env)
        return self.podman(
            "run", "--rm", *argv, "--entrypoint", command[0], self.podman.image, *command[1:],
            timeout=timeout,
        )  # fmt: skip

    def start(self, name: str, command: Sequence[str], *, tmpfs: Sequence[str] = ()) -> None:
        """Start a long-running container of this pod (a sidecar), detached."""
        self.started.append(name)
        self.podman(
            "run", "--detach", *self.args(name=name, tmpfs=tmpfs), "--entrypoint", command[0],
            self.podman.image, *command[1:],
            check=True,
        )  # fmt: skip

    def termination_log(self, container: str) -> Path:
        return self.workdir / f"{container}.termination-log"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def postgres_base() -> Path:
    from testbed.dbservers import host

    return Path(f"{host.base_dir()}{POSTGRES_SUFFIX}")


def start_postgres() -> str:
    """The image tests' PostgreSQL, started (or reused) on 127.0.0.1; its admin URL."""
    return databases.start_dedicated_postgres(postgres_base())


def listen_also_on(admin_url: str, address: str) -> None:
    """Make the server listen on ``address`` too (on its port), with password auth from the
    isolated networks; restart it for that. The shared test servers stay on loopback."""
    base = postgres_base()
    hba = base / "postgresql" / "data" / "pg_hba.conf"
    if HBA_LINE not in hba.read_text():
        with hba.open("a") as conf:
            conf.write(HBA_LINE)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER SYSTEM SET listen_addresses = '127.0.0.1,{address}'")
    port = make_url(admin_url).port
    databases.stop_dedicated_postgres(base)
    databases.start_dedicated_postgres(base, port)


def stop_postgres() -> None:
    databases.stop_dedicated_postgres(postgres_base())


@contextlib.contextmanager
def fresh_database(admin_url: str, reachable_at: str) -> Iterator[tuple[str, str]]:
    """A new empty database: (URL from the host, URL from the container); dropped afterwards."""
    name = unique_name("lockstep_image").replace("-", "_")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    here = make_url(admin_url).set(database=name)
    there = here.set(host=reachable_at)
    try:
        yield (
            here.render_as_string(hide_password=False),
            there.render_as_string(hide_password=False),
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_mariadb_database(admin_url: str, host: str, port: int) -> Iterator[tuple[str, str]]:
    """A new empty MariaDB database: (URL from the host, URL from the container at
    ``host:port``); dropped afterwards."""
    name = unique_name("lockstep_image").replace("-", "_")
    admin = make_url(admin_url)

    def execute(statement: str) -> None:
        with (
            pymysql.connect(
                host=admin.host,
                port=admin.port or 3306,
                user=admin.username,
                password=admin.password or "",
                autocommit=True,
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)

    execute(f"CREATE DATABASE `{name}`")
    here = admin.set(database=name)
    try:
        yield (
            here.render_as_string(hide_password=False),
            here.set(host=host, port=port).render_as_string(hide_password=False),
        )
    finally:
        execute(f"DROP DATABASE IF EXISTS `{name}`")
