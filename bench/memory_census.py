"""Run the operator with a memory census written beside it (diagnostics for bench/fleet.py).

    LOCKSTEP_CENSUS_DIR=DIR python bench/memory_census.py run ...   # `lockstep`'s arguments

Every LOCKSTEP_CENSUS_SECONDS (default 30) a background thread writes DIR/census-<pid>.json:
- the allocators: glibc's `mallinfo2` (heap from the kernel, in use, free inside it, mmapped)
  and CPython's object allocator (arenas held, bytes in blocks in use), so "RSS the process
  keeps" can be told apart from "memory Python objects use";
- the objects: every object the garbage collector tracks, by type, with its own size plus the
  untracked objects it refers to (strings, bytes, numbers; each counted once), largest first.
With LOCKSTEP_CENSUS_KEEP=1 every dump is kept beside the newest (a run's start and its idle).
No tracemalloc (it slows the operator several-fold and misses what it allocated before starting):
this census costs nothing between dumps. To run it as bench/fleet.py's retention side, pass
`--after WRAPPER`, WRAPPER being a shell script that sets LOCKSTEP_CENSUS_DIR and runs
`exec .venv/bin/python bench/memory_census.py "$@"`.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

OUT = Path(os.environ.get("LOCKSTEP_CENSUS_DIR", "/tmp/lockstep-census"))  # noqa: S108
EVERY = float(os.environ.get("LOCKSTEP_CENSUS_SECONDS", "30"))
# "trim": no census, only glibc's malloc_trim(0) at each tick (what giving back free heap saves).
MODE = os.environ.get("LOCKSTEP_CENSUS_MODE", "census")
# "1": keep every dump (census-<pid>-<HHMMSS>.json), not only the newest (census-<pid>.json).
KEEP = os.environ.get("LOCKSTEP_CENSUS_KEEP") == "1"
TOP = 40
SAMPLED_KINDS = 12
SAMPLES_PER_KIND = 4


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc_heap() -> dict[str, float]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mib = 2.0**20
    return {
        "heap_from_kernel_mib": round(info.arena / mib, 1),
        "heap_in_use_mib": round(info.uordblks / mib, 1),
        "heap_free_mib": round(info.fordblks / mib, 1),
        "mmapped_mib": round(info.hblkhd / mib, 1),
    }


def pymalloc_stats() -> dict[str, float]:
    """CPython's object allocator, from sys._debugmallocstats (it prints to the C stderr)."""
    with tempfile.TemporaryFile(mode="w+") as capture:
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()
    wanted = {
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "blocks_in_use_mib",
        "# bytes in available blocks": "free_blocks_mib",
        "# bytes lost to pool headers": "pool_headers_mib",
        "Total": "total_mib",
    }
    stats: dict[str, float] = {}
    for line in text.splitlines():
        for prefix, key in wanted.items():
            if line.startswith(prefix) and "=" in line:
                value = float(line.split("=")[-1].replace(",", "").strip())
                stats[key] = value if key == "arenas" else round(value / 2**20, 1)
    return stats


def _kind(obj: Any) -> str:
    """A finer name than the type for the containers that dominate: which function, which keys."""
    if isinstance(obj, dict):
        return "dict" + str(sorted(str(key) for key in list(obj)[:4]))[:80]
    if type(obj).__name__ == "function":
        return f"function {getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    if isinstance(obj, (set, frozenset, list, tuple)):
        sample = next(iter(obj), None) if len(obj) else None
        return f"{type(obj).__name__} of {type(sample).__name__} (len {min(len(obj), 99)}+)"
    return type(obj).__qualname__


def _rows(table: dict[str, list[int]]) -> list[dict[str, Any]]:
    top = sorted(table.items(), key=lambda item: -item[1][1])[:TOP]
    return [
        {"kind": name, "count": count, "mib": round(size / 2**20, 2)} for name, (count, size) in top
    ]


def _untracked_size(obj: Any, seen: set[int]) -> int:
    """The sizes of what `obj` refers to that the collector does not track (strings, numbers,
    and containers CPython untracked because they hold only such values), each counted once."""
    size = 0
    pending = list(gc.get_referents(obj))
    while pending:
        ref = pending.pop()
        if id(ref) in seen or gc.is_tracked(ref):
            continue
        seen.add(id(ref))
        size += sys.getsizeof(ref, 0)
        if isinstance(ref, (dict, tuple, list, set, frozenset)):
            pending.extend(gc.get_referents(ref))
    return size


def _held_by(tracked: list[Any], by_kind: dict[str, list[int]]) -> dict[str, list[str]]:
    """For the most numerous kinds: what refers to a few of their objects (who keeps them)."""
    wanted = sorted(by_kind, key=lambda kind: -by_kind[kind][0])[:SAMPLED_KINDS]
    samples: dict[str, list[Any]] = {kind: [] for kind in wanted}
    for obj in tracked:
        try:
            kind = _kind(obj)
        except Exception:  # noqa: BLE001, S112 - as in object_census
            continue
        if kind in samples and len(samples[kind]) < SAMPLES_PER_KIND:
            samples[kind].append(obj)
    held: dict[str, list[str]] = {}
    for kind, objects in samples.items():
        owners: list[str] = []
        for obj in objects:
            referrers = [r for r in gc.get_referrers(obj) if r is not tracked and r is not objects]
            owners += [_kind(r) for r in referrers[:3]]
        held[kind] = owners
    return held


def object_census() -> dict[str, Any]:
    tracked = gc.get_objects()  # first: the census's own containers are not in it
    seen: set[int] = set()
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for obj in tracked:
        seen.add(id(obj))
    failures = 0
    for obj in tracked:
        try:
            size = sys.getsizeof(obj, 0) + _untracked_size(obj, seen)
            kind = _kind(obj)
        except Exception:  # noqa: BLE001 - an object that cannot say its size or keys while it changes
            failures += 1
            continue
        for table, name in ((by_type, type(obj).__qualname__), (by_kind, kind)):
            table[name][0] += 1
            table[name][1] += size
    total = sum(size for _, size in by_type.values())
    return {
        "held_by": _held_by(tracked, by_kind),
        "objects": len(tracked),
        "failures": failures,
        "total_mib": round(total / 2**20, 1),
        "by_type": _rows(by_type),
        "by_kind": _rows(by_kind),
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def dump_forever() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"census-{os.getpid()}.json"
    while True:
        time.sleep(EVERY)
        if MODE == "trim":
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            continue
        try:
            started = time.monotonic()
            census = {
                "at": time.strftime("%H:%M:%S"),
                "rss_mib": rss_mib(),
                "glibc": glibc_heap(),
                "pymalloc": pymalloc_stats(),
                "census": object_census(),
            }
            census["census_seconds"] = round(time.monotonic() - started, 2)
            text = json.dumps(census, indent=1) + "\n"
            target.write_text(text)
            if KEEP:  # each dump beside the newest, named by its time
                stamp = str(census["at"]).replace(":", "")
                (OUT / f"census-{os.getpid()}-{stamp}.json").write_text(text)
        except Exception as error:  # noqa: BLE001 - a census never takes the operator down
            (OUT / f"census-{os.getpid()}.error").write_text(repr(error) + "\n")


def main() -> int:
    threading.Thread(target=dump_forever, name="memory-census", daemon=True).start()
    from lockstep.cli.main import main as lockstep_main

    sys.argv[0] = "lockstep"
    return lockstep_main()


if __name__ == "__main__":
    sys.exit(main())
