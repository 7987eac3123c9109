"""A network namespace whose only reachable address is one host address, open on chosen ports.

A migration pod needs one thing from the network: its database. The image smoke tests give a
container exactly that: a veth pair into a private namespace (``podman run --network
ns:<path>``), no default route, IPv6 off on both ends (so no link-local path to the host's
services), and a host iptables chain that accepts from the veth only the listed TCP ports.
Everything is named after this process and undone by :meth:`IsolatedNet.close`: the chain and
its jump, the veth (its per-interface sysctl goes with it) and the namespace. Leftovers of a
process that died without closing are removed by :func:`create`. Needs root.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "lsimg"
NETNS_DIR = Path("/run/netns")
# 10.213.0.0/16, split into /30s: one per process (pid modulo 16384).
SUBNET_OCTETS = (10, 213)


class NetworkUnavailable(RuntimeError):  # noqa: N818 - reads better at the raise site
    """This machine cannot make the namespace (not root, no ip/iptables)."""


@dataclass(frozen=True)
class IsolatedNet:
    """One namespace: the container's side is ``container_ip``, the host's ``host_ip``."""

    name: str
    host_ip: str
    container_ip: str

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def host_if(self) -> str:
        return f"{self.name}h"

    @property
    def chain(self) -> str:
        return self.name.upper()

    def close(self) -> None:
        _remove(self.name)


def create(allowed_ports: Sequence[int], owner_pid: int | None = None) -> IsolatedNet:
    """The namespace of ``owner_pid`` (this process), reaching ``host_ip`` on ``allowed_ports``."""
    if os.geteuid() != 0:
        raise NetworkUnavailable("a private network namespace needs root (ip netns, iptables)")
    pid = os.getpid() if owner_pid is None else owner_pid
    remove_leftovers()
    name = f"{PREFIX}{pid}"
    _remove(name)  # a pid reused since: start clean
    base = (pid % 16384) * 4
    prefix = f"{SUBNET_OCTETS[0]}.{SUBNET_OCTETS[1]}.{base >> 8}"
    net = IsolatedNet(name, f"{prefix}.{(base & 255) + 1}", f"{prefix}.{(base & 255) + 2}")
    inner = f"{name}c"
    try:
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", net.host_if, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", inner, "netns", name)
        _run("sysctl", "-q", "-w", f"net.ipv6.conf.{net.host_if}.disable_ipv6=1")
        _run("ip", "addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        _run("ip", "link", "set", net.host_if, "up")
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        _run(*inside, "ip", "addr", "add", f"{net.container_ip}/30", "dev", inner)
        _run(*inside, "ip", "link", "set", inner, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run("iptables", "-w", "-N", net.chain)
        for port in allowed_ports:
            _run(
                "iptables", "-w", "-A", net.chain, "-p", "tcp", "-d", net.host_ip,
                "--dport", str(port), "-j", "ACCEPT",
            )  # fmt: skip
        _run("iptables", "-w", "-A", net.chain, "-j", "DROP")
        _run("iptables", "-w", "-I", "INPUT", "1", "-i", net.host_if, "-j", net.chain)
    except (OSError, subprocess.CalledProcessError) as error:
        _remove(name)
        said = getattr(error, "stderr", "") or error
        raise NetworkUnavailable(f"cannot make the network namespace {name}: {said}") from None
    return net


def allow(net: IsolatedNet, port: int) -> None:
    """Open one more TCP port of ``net.host_ip`` to the namespace (e.g. a forwarded API server)."""
    _run(
        "iptables", "-w", "-I", net.chain, "1", "-p", "tcp", "-d", net.host_ip,
        "--dport", str(port), "-j", "ACCEPT",
    )  # fmt: skip


def remove_leftovers() -> None:
    """Remove the namespaces (with their veth and chain) of processes that no longer exist."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        found = re.fullmatch(rf"{PREFIX}(\d+)", entry.name)
        if found and not _alive(int(found.group(1))):
            _remove(entry.name)


def _remove(name: str) -> None:
    host_if, chain = f"{name}h", name.upper()
    _quietly("iptables", "-w", "-D", "INPUT", "-i", host_if, "-j", chain)
    _quietly("iptables", "-w", "-F", chain)
    _quietly("iptables", "-w", "-X", chain)
    _quietly("ip", "link", "del", host_if)  # its peer goes with it
    _quietly("ip", "netns", "del", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def _quietly(*argv: str) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, capture_output=True, timeout=30)
