"""The TCP client ports a process and its descendants hold, read from /proc (Linux only).

A database server shows each session's client port (pg_stat_activity.client_port, the port in
PROCESSLIST.HOST). Mapping the ports of a live process to its sessions identifies a run's backends
from outside, without relying on anything the code under test does (application_name, locks), so
the same monitor sees today's code and a fixed one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

_PROC = Path("/proc")
_NET_TABLES = ("tcp", "tcp6")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (through /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in (_PROC / str(current) / "task").iterdir():
                with contextlib.suppress(OSError):
                    children = (task / "children").read_text().split()
                    pending.extend(int(child) for child in children)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for descriptor in (_PROC / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(descriptor.readlink())
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _ports_by_inode(server_port: int) -> dict[int, int]:
    """Local port of every TCP socket connected to ``server_port``, by socket inode."""
    ports: dict[int, int] = {}
    for table in _NET_TABLES:
        with contextlib.suppress(OSError):
            lines = (_PROC / "self" / "net" / table).read_text().splitlines()[1:]
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if inode and int(remote.rsplit(":", 1)[1], 16) == server_port:
                    ports[inode] = int(local.rsplit(":", 1)[1], 16)
    return ports


def client_ports(pids: list[int], server_port: int) -> set[int]:
    """The local ports of the connections ``pids`` hold to the server on ``server_port``."""
    inodes: set[int] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    if not inodes:
        return set()
    by_inode = _ports_by_inode(server_port)
    return {by_inode[inode] for inode in inodes if inode in by_inode}
