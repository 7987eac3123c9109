"""The mechanics of a private MariaDB: its binaries, its URL and health check, the test user,
and starting and stopping ``mariadbd`` in a session of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pymysql

from .host import (
    START_TIMEOUT_SECONDS,
    TEST_PASSWORD,
    TEST_USER,
    ServerUnavailable,
    listen_addresses,
)


def binaries() -> tuple[str, str]:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not installer:
        raise ServerUnavailable(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found: "
            "install them with `apt-get install -y mariadb-server`"
        )
    return server, installer


def url(port: int, database: str = "") -> str:
    return f"mysql://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/{database}"


def root_connection(sock: Path) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    # The install step creates root@localhost without a password; only the
    # private socket reaches it.
    return pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=3, autocommit=True)


def listening_port(sock: Path) -> int | None:
    try:
        with root_connection(sock) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@port")
            row = cur.fetchone()
    except (pymysql.Error, OSError):
        return None
    return int(row[0]) if row else None


def healthy(port: int) -> bool:
    try:
        conn = pymysql.connect(
            host="127.0.0.1", port=port, user=TEST_USER, password=TEST_PASSWORD, connect_timeout=3
        )
    except (pymysql.Error, OSError):
        return False
    conn.close()
    return True


def create_test_user(sock: Path) -> None:
    with root_connection(sock) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (TEST_USER, TEST_PASSWORD)
        )
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (TEST_USER,))


def start(server: str, home: Path, port: int, user: str | None) -> None:
    argv = [
        server,
        "--no-defaults",  # must come first
        f"--datadir={home / 'data'}",
        f"--port={port}",
        f"--bind-address={','.join(listen_addresses())}",  # the real node's pods: the bridge
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


def stop(home: Path) -> None:
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
