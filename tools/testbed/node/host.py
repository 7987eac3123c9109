"""The host side of the real node: what the kubelet, kube-proxy and the CNI bridge change on the
machine, made before they start and undone after they stop.

They change sysctls (the kubelet: ``vm.overcommit_memory``, ``kernel.panic*``; the bridge
plugin: ``ip_forward``), add iptables chains (``KUBE-*``), a bridge, network namespaces, mounts
and log symlinks outside their private directories. The snapshot of the sysctls is written
before anything starts, so that ``down`` in another process restores them; every iptables rule of
our own lives in ``LOCKSTEP-NODE-*`` chains. Loopback is never touched: other test runs on this
machine use 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from testbed.controlplane.state import NODE_IP, ClusterError, log

BRIDGE = "lsnode0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = NODE_IP  # the bridge's address: the node IP, where pods reach the host
BRIDGE_MAC = "02:6c:73:6e:6f:64"  # locally administered ("lsnod"): fixed, see create_bridge

# Every sysctl a component of the node may change (kube-proxy's are kept off by its flags, but
# recorded all the same).
SYSCTLS = (
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
OWN_CHAIN_PREFIX = "LOCKSTEP-NODE"
FOREIGN_CHAIN_PREFIXES = ("KUBE-", "CNI-")  # chains the kubelet, kube-proxy and CNI add
TABLES = ("filter", "nat", "mangle")

# Debian packages the node needs, by the program that shows they are installed.
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "ctr": "containerd",
    "debootstrap": "debootstrap",  # the smoke image's Debian root
    "/bin/busybox": "busybox-static",  # the smoke image's httpd
    "gcc": "gcc",  # the pause image
}


def install_missing() -> None:
    """Install the node's Debian packages if any is missing (the same as
    ``scripts/install-system-deps.sh --node``)."""
    missing = sorted(
        {
            package
            for program, package in PACKAGES.items()
            if not (Path(program).exists() if program.startswith("/") else shutil.which(program))
        }
    )
    if not missing:
        return
    log(f"installing {', '.join(missing)} for the real node")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"apt-get install {' '.join(missing)} failed:\n{result.stderr[-2000:]}")


# --- sysctls -----------------------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def save_sysctls(path: Path) -> None:
    """Record the sysctls as they are before the node starts (kept if already recorded: a
    second ``up`` after a crash must not record the node's own values as the host's)."""
    if not path.exists():
        path.write_text(json.dumps(read_sysctls(), indent=2) + "\n")


def restore_sysctls(path: Path) -> list[str]:
    """Put back every recorded sysctl that differs now; return what was restored."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    restored = []
    now = read_sysctls()
    for name, value in saved.items():
        if now.get(name) != value:
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value)
                restored.append(f"{name}={value}")
    return restored


# --- the bridge and the iptables fence -----------------------------------------


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def create_bridge() -> None:
    """Create the pod bridge with the node address before anything starts.

    The CNI bridge plugin would create it at the first pod; made here, the kubelet's node IP,
    the API server's advertised address and the databases' second listen address exist from
    the start. The plugin reuses a bridge that already carries its gateway address.
    """
    if ip("link", "show", BRIDGE, check=False).returncode != 0:
        ip("link", "add", BRIDGE, "type", "bridge")
    # A bridge whose address was never set takes the lowest address of its ports, so it changes
    # when a pod's veth leaves: pods still send to the old one (their ARP entry for the gateway
    # stays valid for ~30 s) and the bridge floods those frames instead of taking them. Seen:
    # a lock sidecar's query to the database lost for 30 s until the kubelet killed it, and its
    # session, never closed, holding the lock for the next Job. A set address never changes.
    ip("link", "set", BRIDGE, "address", BRIDGE_MAC)
    ip("addr", "replace", f"{GATEWAY}/24", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def delete_bridge() -> None:
    ip("link", "delete", BRIDGE, check=False)


def iptables(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, check=False)


def fence_rules(api_port: int, kubelet_port: int) -> dict[str, list[list[str]]]:
    """Rules that keep pod traffic and the node's open ports on this machine.

    Forwarding between the bridge and any other interface is dropped both ways (the bridge
    plugin turns ``ip_forward`` on for the whole host); the API server (bound to all
    addresses so that pods reach it) and the kubelet (anonymous, AlwaysAllow) only answer
    on loopback and the bridge.
    """
    forward = [
        ["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
        ["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"],
    ]
    inbound = [
        ["-p", "tcp", "--dport", str(port), "!", "-i", "lo", "!", "-i", BRIDGE, "-j", "DROP"]
        for port in (api_port, kubelet_port)
    ]
    inbound.append(["-d", POD_CIDR, "!", "-i", "lo", "!", "-i", BRIDGE, "-j", "DROP"])
    return {"FORWARD": forward, "INPUT": inbound}


def install_fence(api_port: int, kubelet_port: int) -> None:
    """Put the fence first in FORWARD and INPUT (again, if kube-proxy prepended its own)."""
    for hook, rules in fence_rules(api_port, kubelet_port).items():
        chain = f"{OWN_CHAIN_PREFIX}-{hook}"
        if iptables("iptables", "-N", chain).returncode != 0:
            iptables("iptables", "-F", chain)
        for rule in rules:
            iptables("iptables", "-A", chain, *rule)
        while iptables("iptables", "-D", hook, "-j", chain).returncode == 0:
            pass
        result = iptables("iptables", "-I", hook, "1", "-j", chain)
        if result.returncode != 0:
            raise ClusterError(f"iptables -I {hook} -j {chain} failed: {result.stderr.strip()}")


def _jumps_to(rule: list[str], prefixes: tuple[str, ...]) -> bool:
    return "-j" in rule and rule[rule.index("-j") + 1].startswith(prefixes)


def remove_chains(binary: str, prefixes: tuple[str, ...]) -> int:
    """Delete every rule that jumps to a chain with one of ``prefixes``, then those chains."""
    removed = 0
    for table in TABLES:
        listing = iptables(binary, "-t", table, "-S")
        if listing.returncode != 0:
            continue
        chains = []
        for line in listing.stdout.splitlines():
            fields = shlex.split(line)  # comments are quoted: "kubernetes forwarding rules"
            own = fields[1].startswith(prefixes)
            if fields[0] == "-N" and own:
                chains.append(fields[1])
            elif fields[0] == "-A" and not own and _jumps_to(fields, prefixes):
                iptables(binary, "-t", table, "-D", *fields[1:])
        for chain in chains:
            iptables(binary, "-t", table, "-F", chain)
        for chain in chains:
            if iptables(binary, "-t", table, "-X", chain).returncode == 0:
                removed += 1
    return removed


# --- what the runtime leaves outside its directories -----------------------------


def mounts_under(roots: tuple[Path, ...]) -> list[str]:
    """Mount points below any of ``roots``, deepest first (for unmounting)."""
    prefixes = tuple(f"{root}/" for root in roots)
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(prefixes) or point in {str(r) for r in roots}:
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all(roots: tuple[Path, ...]) -> int:
    points = mounts_under(roots)
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return len(points)


NETNS_DIR = Path("/run/netns")


def remove_network_namespaces() -> int:
    """Remove containerd's pod network namespaces (``/run/netns/cni-*``) left behind, then the
    directory's own shared bind mount (made with the first namespace) once it is empty."""
    removed = 0
    for netns in NETNS_DIR.glob("cni-*"):
        subprocess.run(["umount", "-l", str(netns)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            netns.unlink()
            removed += 1
    if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        subprocess.run(["umount", "-l", str(NETNS_DIR)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            NETNS_DIR.rmdir()
    return removed


def remove_log_links(pod_logs: Path) -> None:
    """The kubelet links every container log into /var/log/containers (not configurable)."""
    for link in Path("/var/log/containers").glob("*.log"):
        with contextlib.suppress(OSError):
            if link.is_symlink() and str(link.readlink()).startswith(str(pod_logs)):
                link.unlink()


def kill_shims(socket: Path) -> int:
    """SIGKILL the containerd shims still serving our containerd (they outlive it by design)."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and os.fsencode(socket) in argv:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), 9)
                killed += 1
    return killed


# Directories the kubelet, containerd and libcni create at fixed paths whatever their root
# directories say; absent on this machine before the node (one node per machine), so what is
# left of them once the node is down (empty directories, our CNI results) is ours to remove.
FIXED_PATH_DIRS = (
    Path("/run/containerd"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/var/lib/kubelet"),
)


def _remove_empty_dirs(top: Path) -> None:
    if not top.is_dir() or top.is_symlink():
        return
    for directory, _subdirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            Path(directory).rmdir()  # only succeeds when empty


def remove_fixed_path_leftovers(cni_network: str) -> None:
    results = Path("/var/lib/cni/results")
    for pattern in (f"{cni_network}-*", "cni-loopback-*"):
        for result in results.glob(pattern):
            result.unlink(missing_ok=True)
    Path("/var/lib/kubelet/device-plugins/kubelet.sock").unlink(missing_ok=True)
    for top in FIXED_PATH_DIRS:
        _remove_empty_dirs(top)
