"""What the private test database servers share: their base directory and test user, the
service user a server runs as, a lock per base directory, waiting for a server, and the URLs
remembered in ``urls.json``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from testbed import localhost

TEST_USER = "lockstep"
# A private server bound to 127.0.0.1 in a throwaway directory: a fixed
# password keeps the URLs stable across runs, which makes failures easy to replay.
TEST_PASSWORD = "lockstep-test"  # noqa: S105
START_TIMEOUT_SECONDS = 60.0
SERVERS = ("postgresql", "mariadb")


class ServerUnavailable(RuntimeError):  # noqa: N818 - reads better at the raise site
    """A test database server cannot be installed, started or reached."""


def base_dir() -> Path:
    return Path(os.environ.get("LOCKSTEP_DB_DIR") or localhost.checkout_state_dir("db"))


# --------------------------------------------------------------------------- helpers


def pod_address() -> str | None:
    """The address where pods of the real node (``LOCKSTEP_E2E_NODE=kubelet``) reach this
    machine, or None with the pod agent (its pods are host processes and use 127.0.0.1).

    The servers listen there as well as on 127.0.0.1; the node's bridge that carries the
    address is created here if the cluster has not made it yet, so the start order of the
    databases and the cluster does not matter (a socket bound to it survives the bridge being
    deleted and made again by the next ``cluster up``).
    """
    if os.environ.get("LOCKSTEP_E2E_NODE") != "kubelet":
        return None
    from testbed.node import host as node_host  # root-only machinery, loaded only when needed

    node_host.create_bridge()
    return node_host.GATEWAY


def listen_addresses() -> list[str]:
    extra = pod_address()
    return ["127.0.0.1", *([extra] if extra else [])]


def url_for_pods(url: str) -> str:
    """``url`` on the address where the real node's pods reach this machine (it is local, so
    the tests reach it too); unchanged with the pod agent, whose pods use 127.0.0.1."""
    from sqlalchemy.engine import make_url

    address = pod_address()
    parsed = make_url(url)
    if address is None or parsed.host != "127.0.0.1":
        return url
    return parsed.set(host=address).render_as_string(hide_password=False)


def reachable(address: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def service_user(name: str) -> str | None:
    """The unprivileged user to run a server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise ServerUnavailable(
            f"running as root needs the system user {name!r} to run the server; "
            f"it is created by the server's apt package"
        ) from exc
    return name


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    return list(argv) if user is None else ["runuser", "-u", user, "--", *argv]


def chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def run(argv: Sequence[str], what: str) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
    if completed.returncode != 0:
        raise ServerUnavailable(
            f"{what} failed (exit {completed.returncode}): {' '.join(argv)}\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def exclusive(base: Path) -> Iterator[None]:
    """Serialise concurrent `up`s (two pytest runs at once) on one directory."""
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # the service users must traverse it
    with (base / ".testbed.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_until(check: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ServerUnavailable(
        f"{what} did not become ready in {START_TIMEOUT_SECONDS:.0f}s; log:\n{_tail(log)}"
    )


# --------------------------------------------------------------------------- remembered URLs


def urls_file(base: Path) -> Path:
    return base / "urls.json"


def read_urls(base: Path | None = None) -> dict[str, str]:
    try:
        data = json.loads(urls_file(base or base_dir()).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(base: Path, server: str, url: str) -> str:
    urls = read_urls(base)
    if urls.get(server) != url:
        urls[server] = url
        urls_file(base).write_text(json.dumps(urls, indent=2, sort_keys=True) + "\n")
    return url
