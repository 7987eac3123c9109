"""A campaign: one workload, its lanes side by side, the session monitor over all of them.

:func:`run` returns the :class:`~.trials.Tally`; :func:`summary` renders the figures of several
campaigns as the table the suite prints, and :func:`write_figures` stores them as JSON.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from sqlalchemy.engine import make_url

from faultinject import monitor, servers, trials, workloads

MONITOR_HZ = 40.0


def run(
    workload: workloads.Workload,
    admin_url: str,
    kills: int,
    lanes: int,
    workdir: Path,
    seed: int,
) -> tuple[trials.Tally, monitor.SessionMonitor]:
    """Kill ``kills`` times (spread over ``lanes`` databases); the tally and the monitor."""
    tally = trials.Tally(workload.name)
    registry = monitor.Registry(servers.server_port(admin_url))
    prefix = f"fault_{uuid.uuid4().hex[:8]}"
    with servers.lane_databases(admin_url, prefix, lanes) as databases:
        watcher = monitor.SessionMonitor(admin_url, registry, databases, MONITOR_HZ)
        with watcher:
            threads = []
            for index, (name, url) in enumerate(sorted(databases.items())):
                lane = trials.Lane(
                    name=f"lane{index}", url=url, workload=workload, registry=registry,
                    tally=tally, workdir=workdir / f"lane{index}",
                    settle=partial(servers.settle, admin_url, name, trials.SETTLE_SECONDS),
                    reset=servers.reset, rng=random.Random(seed * 1000 + index),
                )  # fmt: skip
                share = kills // lanes + (1 if index < kills % lanes else 0)
                thread = threading.Thread(target=_guarded, args=(lane, share, tally), daemon=True)
                threads.append(thread)
                thread.start()
            for thread in threads:
                thread.join()
    if watcher.error is not None:
        tally.note(f"the session monitor failed: {watcher.error!r}")
    tally.overlaps = len(watcher.overlaps)
    tally.overlap_samples = sum(o.samples for o in watcher.overlaps.values())
    for overlap in list(watcher.overlaps.values())[:20]:
        tally.note(
            f"overlap on {overlap.database} for {overlap.last_seen - overlap.first_seen:.2f}s "
            f"({overlap.samples} polls): " + " | ".join(overlap.statements)
        )
    return tally, watcher


def unlocked_pair(
    workload: workloads.Workload, admin_url: str, workdir: Path
) -> monitor.SessionMonitor:
    """The monitor's positive control: two plain clients (not Lockstep: nothing tags, locks or
    fences them) sleeping on one database at once must show up as an overlap, else a 0 from
    :func:`run` would prove nothing. ``workload.tool`` should be "plain"."""
    tally = trials.Tally(workload.name)
    registry = monitor.Registry(servers.server_port(admin_url))
    prefix = f"fault_{uuid.uuid4().hex[:8]}"
    with servers.lane_databases(admin_url, prefix, 1) as databases:
        ((name, url),) = databases.items()
        watcher = monitor.SessionMonitor(admin_url, registry, databases, MONITOR_HZ)
        lane = trials.Lane(
            name="control", url=url, workload=workload, registry=registry, tally=tally,
            workdir=workdir, settle=partial(servers.settle, admin_url, name, trials.SETTLE_SECONDS),
            reset=servers.reset, rng=random.Random(0),
        )  # fmt: skip
        lane.workload.write(lane.source, lane.rng, sleep=1.5)
        with watcher:
            pair = [trials.Run(f"control/r{index}", lane) for index in range(2)]
            pair[0].start_without_lock()
            time.sleep(1.0)  # the first client sleeps on the server when the second starts
            pair[1].start_without_lock()
            for run in pair:
                run.finish()
            lane.settle()
    return watcher


def _guarded(lane: trials.Lane, kills: int, tally: trials.Tally) -> None:
    try:
        lane.trials(kills)
    except Exception as error:  # noqa: BLE001 - a lane that broke is a failed figure, not a hang
        tally.note(f"{lane.name} stopped: {error!r}")
        tally.add(disagreements=1)


def summary(results: Sequence[tuple[trials.Tally, monitor.SessionMonitor]]) -> str:
    header = ("workload", "runs", "kills", "overlaps", "disagree", "reruns", "converged", "poll Hz")
    rows = [header]
    for tally, watcher in results:
        rows.append((
            tally.workload, str(tally.runs), str(tally.kills), str(tally.overlaps),
            str(tally.disagreements), str(tally.reruns), str(tally.converged),
            f"{watcher.stats.rate():.0f} (max gap {watcher.stats.longest_gap * 1000:.0f} ms)",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def write_figures(
    path: Path, results: Sequence[tuple[trials.Tally, monitor.SessionMonitor]], code: str
) -> None:
    figures = [
        {
            **tally.figures(),
            "monitorHz": round(watcher.stats.rate(), 1),
            "monitorLongestGapMs": round(watcher.stats.longest_gap * 1000),
            # Sessions on the lane databases that no run held: the suite's resets and snapshots.
            "unattributedBackends": len(watcher.stats.unattributed),
        }
        for tally, watcher in results
    ]
    path.write_text(json.dumps({"code": code, "campaigns": figures}, indent=2))


def engine_of(admin_url: str) -> str:
    return "postgresql" if make_url(admin_url).get_backend_name() == "postgresql" else "mysql"
