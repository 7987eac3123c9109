"""Private PostgreSQL and MariaDB servers for the integration tests.

Each server lives under ``$LOCKSTEP_DB_DIR`` (default
``/tmp/lockstep-<checkout>-<hash>/db``, one per checkout), listens on a free port on 127.0.0.1
only, keeps its unix socket inside its own directory and trades durability for speed (fsync
off): the data is throwaway.  Servers keep running after the test session so the next run
reuses them (a healthy server is never restarted); ``down`` stops them and deletes their data.

When running as root, each server runs as an unprivileged system user
(``postgres`` / ``mysql``, created by the Debian packages) because neither
server agrees to run as root.

Usage::

    PYTHONPATH=tools python -m testbed.databases up|down|urls

``LOCKSTEP_TEST_POSTGRES_URL`` / ``LOCKSTEP_TEST_MARIADB_URL`` point the tests
at servers started elsewhere (a CI service container, say) instead.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from . import localhost
from .dbservers import host, mariadb, postgres


def ensure_postgres(base: Path | None = None) -> str:
    """Start (or reuse) the private PostgreSQL; return a superuser URL."""
    override = os.environ.get("LOCKSTEP_TEST_POSTGRES_URL")
    if override:
        return override
    return _ensure_postgres(base or host.base_dir())


def _ensure_postgres(base: Path, wanted_port: int | None = None) -> str:
    """Start (or reuse) the PostgreSQL under ``base``, on ``wanted_port`` or a free port."""
    datadir = base / "postgresql" / "data"
    with host.exclusive(base):
        port = postgres.running_port(datadir)
        addresses = host.listen_addresses()
        if (
            port is not None
            and wanted_port in (None, port)
            and postgres.healthy(postgres.url(port))
            and all(host.reachable(address, port) for address in addresses)
        ):
            return host.remember(base, "postgresql", postgres.url(port))
        bindir = postgres.bin_dir()
        user = host.service_user("postgres")
        (base / "postgresql").mkdir(exist_ok=True)
        host.chown(base / "postgresql", user)
        if not (datadir / "PG_VERSION").exists():
            postgres.initdb(bindir, datadir, user)
        postgres.allow_pods(datadir)
        if port is not None:  # alive but unreachable (or on another port): restart it cleanly
            postgres.stop(datadir)
        port = wanted_port or localhost.free_port()
        log = base / "postgresql" / "server.log"
        log.touch()
        host.chown(log, user)
        host.run(
            host.as_user(
                user,
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-o",
                    # Only the real node needs more than postgresql.conf's loopback: a command-line
                    # setting would override what ALTER SYSTEM sets (the image tests' network).
                    f"-p {port}"
                    + (f" -c listen_addresses={','.join(addresses)}" if len(addresses) > 1 else ""),
                    "-w",
                    "-t",
                    str(int(host.START_TIMEOUT_SECONDS)),
                    "start",
                ],
            ),
            f"starting PostgreSQL (log: {log})",
        )
        url = postgres.url(port)
        host.wait_until(lambda: postgres.healthy(url), "PostgreSQL", log)
        return host.remember(base, "postgresql", url)


# --------------------------------------------------------------------------- dedicated PostgreSQL
# A server of a test's own (chaos tests stop and start it), never the shared one above. Its
# base directory must be one the `postgres` user can reach (under /tmp, not a 0700 pytest dir).


def start_dedicated_postgres(base: Path, port: int | None = None) -> str:
    """Start (or reuse) a PostgreSQL of its own under ``base``; return its superuser URL.

    ``port`` restarts a stopped server on the port it had, so the URLs handed out stay valid.
    ``LOCKSTEP_TEST_POSTGRES_URL`` does not apply: this server is always a local one.
    """
    if base.resolve() == host.base_dir().resolve():
        raise ValueError(
            f"{base} is the shared test servers' directory: use a directory of its own"
        )
    return _ensure_postgres(base, port)


def stop_dedicated_postgres(base: Path, *, immediate: bool = False) -> None:
    """Stop the PostgreSQL under ``base``; ``immediate`` aborts it like a crash (no checkpoint).

    Either way, every session is cut off and open transactions are lost (rolled back).
    """
    with host.exclusive(base):
        postgres.stop(base / "postgresql" / "data", "immediate" if immediate else "fast")


def remove_dedicated_postgres(base: Path) -> None:
    """Stop the PostgreSQL under ``base`` and delete the directory."""
    stop_dedicated_postgres(base, immediate=True)
    shutil.rmtree(base, ignore_errors=True)


def ensure_mariadb(base: Path | None = None) -> str:
    """Start (or reuse) the private MariaDB; return a URL of a user with all privileges."""
    override = os.environ.get("LOCKSTEP_TEST_MARIADB_URL")
    if override:
        return override
    base = base or host.base_dir()
    home = base / "mariadb"
    datadir, sock, log = home / "data", home / "mysqld.sock", home / "server.log"
    with host.exclusive(base):
        port = mariadb.listening_port(sock)
        addresses = host.listen_addresses()
        if (
            port is not None
            and mariadb.healthy(port)
            and all(host.reachable(address, port) for address in addresses)
        ):
            return host.remember(base, "mariadb", mariadb.url(port))
        server, installer = mariadb.binaries()
        user = host.service_user("mysql")
        home.mkdir(exist_ok=True)
        host.chown(home, user)
        if port is not None:
            mariadb.stop(home)
        if not (datadir / "mysql").is_dir():
            user_args = [f"--user={user}"] if user else []
            host.run(
                [
                    installer,
                    "--no-defaults",
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                    *user_args,
                ],
                "mariadb-install-db",
            )
        port = localhost.free_port()
        mariadb.start(server, home, port, user)
        host.wait_until(lambda: mariadb.listening_port(sock) is not None, "MariaDB", log)
        mariadb.create_test_user(sock)
        return host.remember(base, "mariadb", mariadb.url(port))


def up(servers: Sequence[str] = host.SERVERS) -> dict[str, str]:
    starters = {"postgresql": ensure_postgres, "mariadb": ensure_mariadb}
    return {name: starters[name]() for name in servers}


def down() -> None:
    base = host.base_dir()
    with host.exclusive(base):
        postgres.stop(base / "postgresql" / "data")
        mariadb.stop(base / "mariadb")
        for name in host.SERVERS:
            shutil.rmtree(base / name, ignore_errors=True)
        host.urls_file(base).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    servers = args[1:] or list(host.SERVERS)
    unknown = [s for s in servers if s not in host.SERVERS]
    if command not in {"up", "down", "urls"} or unknown:
        print(
            "usage: python -m testbed.databases up|down|urls [postgresql] [mariadb]",
            file=sys.stderr,
        )
        return 2
    try:
        if command == "up":
            print(json.dumps(up(servers), indent=2, sort_keys=True))
        elif command == "down":
            down()
        else:
            print(json.dumps(host.read_urls(), indent=2, sort_keys=True))
    except host.ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
