"""Private PostgreSQL and MariaDB servers for the integration tests.

Each server lives under ``${LOCKSTEP_DB_DIR:-/tmp/lockstep-db}``, listens on a
free port on 127.0.0.1 only, keeps its unix socket inside its own directory and
trades durability for speed (fsync off): the data is throwaway.  Servers keep
running after the test session so the next run reuses them (a healthy server
is never restarted); ``down`` stops them and deletes their data.

When running as root, each server runs as an unprivileged system user
(``postgres`` / ``mysql``, created by the Debian packages) because neither
server agrees to run as root.

Usage::

    PYTHONPATH=tools python -m testbed.databases up|down|urls

``LOCKSTEP_TEST_POSTGRES_URL`` / ``LOCKSTEP_TEST_MARIADB_URL`` point the tests
at servers started elsewhere (a CI service container, say) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pymysql

TEST_USER = "lockstep"
# A private server bound to 127.0.0.1 in a throwaway directory: a fixed
# password keeps the URLs stable across runs, which makes failures easy to replay.
TEST_PASSWORD = "lockstep-test"  # noqa: S105
START_TIMEOUT_SECONDS = 60.0
SERVERS = ("postgresql", "mariadb")


class ServerUnavailable(RuntimeError):  # noqa: N818 - reads better at the raise site
    """A test database server cannot be installed, started or reached."""


def base_dir() -> Path:
    return Path(os.environ.get("LOCKSTEP_DB_DIR", "/tmp/lockstep-db"))  # noqa: S108


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user(name: str) -> str | None:
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


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    return list(argv) if user is None else ["runuser", "-u", user, "--", *argv]


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(argv: Sequence[str], what: str) -> None:
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
def _exclusive(base: Path) -> Iterator[None]:
    """Serialise concurrent `up`s (two pytest runs at once) on one directory."""
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # the service users must traverse it
    with (base / ".testbed.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_until(check: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ServerUnavailable(
        f"{what} did not become ready in {START_TIMEOUT_SECONDS:.0f}s; log:\n{_tail(log)}"
    )


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path:
    override = os.environ.get("LOCKSTEP_PG_BINDIR")
    if override:
        if not (Path(override) / "initdb").is_file():
            raise ServerUnavailable(f"LOCKSTEP_PG_BINDIR={override} holds no initdb")
        return Path(override)
    # Debian keeps one directory per major version; take the newest.
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: "
        "install them with `apt-get install -y postgresql` (or set LOCKSTEP_PG_BINDIR)"
    )


def postgres_url(port: int, database: str = "postgres") -> str:
    return f"postgresql://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/{database}"


def _postgres_healthy(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _postgres_running_port(datadir: Path) -> int | None:
    """The port of a live postmaster for this data dir (line 4 of postmaster.pid)."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def _postgres_init(bindir: Path, datadir: Path, user: str | None) -> None:
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chown(datadir, user)
    pwfile = datadir.parent / "postgresql.pw"
    pwfile.write_text(TEST_PASSWORD + "\n")
    _chown(pwfile, user)
    try:
        _run(
            _as_user(
                user,
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(datadir),
                    "-U",
                    TEST_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{datadir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "log_min_messages": "warning",
    }
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write("\n# lockstep testbed: throwaway data, speed over durability\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def ensure_postgres(base: Path | None = None) -> str:
    """Start (or reuse) the private PostgreSQL; return a superuser URL."""
    override = os.environ.get("LOCKSTEP_TEST_POSTGRES_URL")
    if override:
        return override
    return _ensure_postgres(base or base_dir())


def _ensure_postgres(base: Path, wanted_port: int | None = None) -> str:
    """Start (or reuse) the PostgreSQL under ``base``, on ``wanted_port`` or a free port."""
    datadir = base / "postgresql" / "data"
    with _exclusive(base):
        port = _postgres_running_port(datadir)
        if (
            port is not None
            and wanted_port in (None, port)
            and _postgres_healthy(postgres_url(port))
        ):
            return _remember(base, "postgresql", postgres_url(port))
        bindir = _postgres_bindir()
        user = _service_user("postgres")
        (base / "postgresql").mkdir(exist_ok=True)
        _chown(base / "postgresql", user)
        if not (datadir / "PG_VERSION").exists():
            _postgres_init(bindir, datadir, user)
        if port is not None:  # alive but unreachable (or on another port): restart it cleanly
            _stop_postgres(datadir)
        port = wanted_port or _free_port()
        log = base / "postgresql" / "server.log"
        log.touch()
        _chown(log, user)
        _run(
            _as_user(
                user,
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT_SECONDS)),
                    "start",
                ],
            ),
            f"starting PostgreSQL (log: {log})",
        )
        url = postgres_url(port)
        _wait_until(lambda: _postgres_healthy(url), "PostgreSQL", log)
        return _remember(base, "postgresql", url)


def _stop_postgres(datadir: Path, mode: str = "fast") -> None:
    if _postgres_running_port(datadir) is None:
        return
    bindir = _postgres_bindir()
    user = _service_user("postgres")
    _run(
        _as_user(user, [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", mode, "-w", "stop"]),
        "stopping PostgreSQL",
    )


# --------------------------------------------------------------------------- dedicated PostgreSQL
# A server of a test's own (chaos tests stop and start it), never the shared one above. Its
# base directory must be one the `postgres` user can reach (under /tmp, not a 0700 pytest dir).


def start_dedicated_postgres(base: Path, port: int | None = None) -> str:
    """Start (or reuse) a PostgreSQL of its own under ``base``; return its superuser URL.

    ``port`` restarts a stopped server on the port it had, so the URLs handed out stay valid.
    ``LOCKSTEP_TEST_POSTGRES_URL`` does not apply: this server is always a local one.
    """
    if base.resolve() == base_dir().resolve():
        raise ValueError(
            f"{base} is the shared test servers' directory: use a directory of its own"
        )
    return _ensure_postgres(base, port)


def stop_dedicated_postgres(base: Path, *, immediate: bool = False) -> None:
    """Stop the PostgreSQL under ``base``; ``immediate`` aborts it like a crash (no checkpoint).

    Either way, every session is cut off and open transactions are lost (rolled back).
    """
    with _exclusive(base):
        _stop_postgres(base / "postgresql" / "data", "immediate" if immediate else "fast")


def remove_dedicated_postgres(base: Path) -> None:
    """Stop the PostgreSQL under ``base`` and delete the directory."""
    stop_dedicated_postgres(base, immediate=True)
    shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- MariaDB


def _mariadb_binaries() -> tuple[str, str]:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not installer:
        raise ServerUnavailable(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found: "
            "install them with `apt-get install -y mariadb-server`"
        )
    return server, installer


def mariadb_url(port: int, database: str = "") -> str:
    return f"mysql://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/{database}"


def _mariadb_root(sock: Path) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    # The install step creates root@localhost without a password; only the
    # private socket reaches it.
    return pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=3, autocommit=True)


def _mariadb_port(sock: Path) -> int | None:
    try:
        with _mariadb_root(sock) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@port")
            row = cur.fetchone()
    except (pymysql.Error, OSError):
        return None
    return int(row[0]) if row else None


def _mariadb_healthy(port: int) -> bool:
    try:
        conn = pymysql.connect(
            host="127.0.0.1", port=port, user=TEST_USER, password=TEST_PASSWORD, connect_timeout=3
        )
    except (pymysql.Error, OSError):
        return False
    conn.close()
    return True


def _mariadb_create_user(sock: Path) -> None:
    with _mariadb_root(sock) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (TEST_USER, TEST_PASSWORD)
        )
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (TEST_USER,))


def ensure_mariadb(base: Path | None = None) -> str:
    """Start (or reuse) the private MariaDB; return a URL of a user with all privileges."""
    override = os.environ.get("LOCKSTEP_TEST_MARIADB_URL")
    if override:
        return override
    base = base or base_dir()
    home = base / "mariadb"
    datadir, sock, log = home / "data", home / "mysqld.sock", home / "server.log"
    with _exclusive(base):
        port = _mariadb_port(sock)
        if port is not None and _mariadb_healthy(port):
            return _remember(base, "mariadb", mariadb_url(port))
        server, installer = _mariadb_binaries()
        user = _service_user("mysql")
        home.mkdir(exist_ok=True)
        _chown(home, user)
        if port is not None:
            _stop_mariadb(home)
        if not (datadir / "mysql").is_dir():
            user_args = [f"--user={user}"] if user else []
            _run(
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
        port = _free_port()
        _start_mariadb(server, home, port, user)
        _wait_until(lambda: _mariadb_port(sock) is not None, "MariaDB", log)
        _mariadb_create_user(sock)
        return _remember(base, "mariadb", mariadb_url(port))


def _start_mariadb(server: str, home: Path, port: int, user: str | None) -> None:
    argv = [
        server,
        "--no-defaults",  # must come first
        f"--datadir={home / 'data'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={home / 'mysqld.sock'}",
        f"--pid-file={home / 'mysqld.pid'}",
        f"--log-error={home / 'server.log'}",
        "--skip-name-resolve",
        "--skip-log-bin",
        "--max-connections=300",
        "--innodb-buffer-pool-size=64M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--character-set-server=utf8mb4",
    ]
    if user:
        argv.append(f"--user={user}")
    # Its own session: the server must outlive the pytest run that started it.
    with (home / "server.out").open("a") as out:
        subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True, cwd="/")


def _stop_mariadb(home: Path) -> None:
    try:
        pid = int((home / "mysqld.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    raise ServerUnavailable(f"MariaDB (pid {pid}) did not stop in {START_TIMEOUT_SECONDS:.0f}s")


# --------------------------------------------------------------------------- state & CLI


def _urls_file(base: Path) -> Path:
    return base / "urls.json"


def read_urls(base: Path | None = None) -> dict[str, str]:
    try:
        data = json.loads(_urls_file(base or base_dir()).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _remember(base: Path, server: str, url: str) -> str:
    urls = read_urls(base)
    if urls.get(server) != url:
        urls[server] = url
        _urls_file(base).write_text(json.dumps(urls, indent=2, sort_keys=True) + "\n")
    return url


def up(servers: Sequence[str] = SERVERS) -> dict[str, str]:
    starters = {"postgresql": ensure_postgres, "mariadb": ensure_mariadb}
    return {name: starters[name]() for name in servers}


def down() -> None:
    base = base_dir()
    with _exclusive(base):
        _stop_postgres(base / "postgresql" / "data")
        _stop_mariadb(base / "mariadb")
        for name in SERVERS:
            shutil.rmtree(base / name, ignore_errors=True)
        _urls_file(base).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    servers = args[1:] or list(SERVERS)
    unknown = [s for s in servers if s not in SERVERS]
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
            print(json.dumps(read_urls(), indent=2, sort_keys=True))
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
