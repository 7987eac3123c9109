"""Profiling a process with py-spy, and reading its collapsed stacks: top functions and the share
of samples per area of the operator."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib.common import log


def start_py_spy(pid: int, out: Path, idle: bool = False) -> Callable[[], None]:
    """Sample `pid` with py-spy (collapsed stacks to `out`) until the returned stop is called.

    Non-blocking sampling: the process is never paused, so latencies stay as they are.
    `idle` keeps samples of threads that wait (on the network, say): where the time goes,
    not only where the CPU goes.
    """
    import signal
    import subprocess

    spy = shutil_which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    argv += ["--nonblocking", "--output", str(out), *(["--idle"] if idle else [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)

    def stop() -> None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log(f"profile: {out}")

    return stop


def shutil_which(name: str) -> str | None:
    import shutil

    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def summarize_profile(path: Path, top: int = 30, focus: tuple[str, ...] = ()) -> list[str]:
    """Top functions by inclusive share of samples, from py-spy's collapsed stacks."""
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    if not total:
        return ["(no samples)"]
    rows = [
        (name, count)
        for name, count in inclusive.items()
        if not focus or any(f in name for f in focus)
    ]
    rows.sort(key=lambda item: -item[1])
    lines = [f"{total} samples; inclusive share, self share, function"]
    for name, count in rows[:top]:
        lines.append(f"{100 * count / total:6.1f}% {100 * leaf.get(name, 0) / total:6.1f}%  {name}")
    return lines


def _frame(text: str) -> str:
    """`function (path/to/module.py:123)` -> `module.py:function` (lines merged)."""
    match = re.match(r"(.*) \((.*?):\d+\)$", text.strip())
    if not match:
        return text.strip()
    function, path = match.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{short}:{function}"


# Where an operator's CPU samples go: the first rule whose substring is in the stack wins
# ("leaf:" rules look at the innermost frame only).
PROFILE_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting: event loop select", ("leaf:selectors.py",)),
    ("waiting: idle worker threads", ("leaf:futures/thread.py", "leaf:threading.py")),
    ("lockstep: version table read (new engine + connect)", ("lockstep/version_tables.py",)),
    (
        "lockstep: lease renewals",
        ("lockstep/controller/leader_election.py", "lockstep/controller/lease_rules.py"),
    ),
    ("lockstep: cache copies and scans", ("lockstep/controller/cache.py",)),
    ("lockstep: planning", ("lockstep/planning/", "lockstep/conditions.py")),
    ("lockstep: metrics", ("lockstep/controller/metrics.py", "prometheus_client")),
    ("lockstep: API calls (kube/, kubernetes client)", ("lockstep/kube/",)),
    ("kopf: per-event diff-base (deepcopy) and diff", ("diffbase.py", "diffs.py")),
    ("kopf: posting Events", ("posting.py",)),
    ("kopf: other event processing", ("kopf/_core/reactor",)),
    ("kopf: watch streams", ("kopf/",)),
    (
        "event loop I/O (aiohttp: Kopf's streams and requests)",
        ("leaf:selector_events.py", "leaf:ssl.py", "leaf:sslproto.py", "leaf:events.py"),
    ),
    ("lockstep: reconcile, other", ("lockstep/",)),
    ("other", ("",)),
)
# Inside the API calls: what the kubernetes client spends it on (innermost frame).
CLIENT_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("argument validation (pydantic validate_call)", ("leaf:pydantic",)),
    ("model (de)serialization", ("leaf:client/models", "leaf:api_client.py", "leaf:json")),
    ("HTTP, TLS, sockets", ("leaf:urllib3", "leaf:ssl.py", "leaf:socket.py", "leaf:http/")),
    ("other", ("",)),
)


def profile_areas(
    path: Path,
    areas: tuple[tuple[str, tuple[str, ...]], ...] = PROFILE_AREAS,
    within: str = "",
) -> list[tuple[str, float]]:
    """Share of samples per area, from py-spy's collapsed stacks (only stacks with `within`)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or within not in stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        for area, needles in areas:
            if any(
                needle[5:] in leaf if needle.startswith("leaf:") else needle in stack
                for needle in needles
            ):
                counts[area] = counts.get(area, 0) + int(count_text)
                break
        total += int(count_text)
    if not total:
        return []
    return sorted(
        ((area, round(100 * n / total, 1)) for area, n in counts.items()), key=lambda x: -x[1]
    )
