"""The mechanics of a private PostgreSQL: its binaries, ``initdb`` with throwaway settings, its
URL and health check, and ``pg_ctl stop``."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import psycopg

from .host import TEST_PASSWORD, TEST_USER, ServerUnavailable, as_user, chown, run, service_user


def bin_dir() -> Path:
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


def url(port: int, database: str = "postgres") -> str:
    return f"postgresql://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/{database}"


def healthy(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def running_port(datadir: Path) -> int | None:
    """The port of a live postmaster for this data dir (line 4 of postmaster.pid)."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def initdb(bindir: Path, datadir: Path, user: str | None) -> None:
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    chown(datadir, user)
    pwfile = datadir.parent / "postgresql.pw"
    pwfile.write_text(TEST_PASSWORD + "\n")
    chown(pwfile, user)
    try:
        run(
            as_user(
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


POD_HBA_LINE = "host all all 10.244.0.0/24 scram-sha-256  # the real node's pods (testbed.node)"


def allow_pods(datadir: Path) -> None:
    """Let the real node's pods (the bridge network) log in with the password, as on
    127.0.0.1; harmless while the server listens on loopback only."""
    hba = datadir / "pg_hba.conf"
    with contextlib.suppress(OSError):
        if POD_HBA_LINE not in hba.read_text():
            with hba.open("a") as handle:
                handle.write(POD_HBA_LINE + "\n")


def stop(datadir: Path, mode: str = "fast") -> None:
    if running_port(datadir) is None:
        return
    bindir = bin_dir()
    user = service_user("postgres")
    run(
        as_user(user, [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", mode, "-w", "stop"]),
        "stopping PostgreSQL",
    )
