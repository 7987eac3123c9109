"""One operator instance against two shards on the same fleet (bench/fleet.py, `--shard-max`).

The seeder labels every other migration `bench.lockstep.dev/shard=a`, the rest `=b`. "one" is a
single instance over all of them; "2 shards" are two processes started together, each with
`--selector bench.lockstep.dev/shard=<x>` and a Lease of its own, measured as one: start-up until
both have passed over their half and are quiet, CPU and RSS added up (each instance's peak is
printed too). Both keep every Job (`--keep-finished-jobs -1`), so both start on the fleet as
seeded, and so does the retention side that runs after them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.bed import Bed
from benchlib.common import SYSTEM_NAMESPACE, log, mib, sample_process
from testbed import operatorprocess
from testbed.operatorprocess import OperatorProcess

SHARD_LABEL = "bench.lockstep.dev/shard"
SHARDS = ("a", "b")
COLUMNS = ["one", "2 shards"]


def shard_of(index: int) -> str:
    return SHARDS[index % len(SHARDS)]


def compare(
    bed: Bed,
    size: int,
    newest: list[tuple[str, str, str]],
    args: argparse.Namespace,
    log_dir: Path,
    run_one: Callable[..., dict[str, Any]],
    measure: Callable[..., dict[str, Any]],
    reconciled: Callable[[OperatorProcess, int], Callable[[], bool]],
) -> dict[str, Any]:
    one = run_one(bed, size, newest, args, log_dir, "one", None, keep=-1)
    operatorprocess.LOCKSTEP = Path(sys.executable).parent / "lockstep"
    processes = [
        OperatorProcess(
            bed.operator.kubeconfig,
            log_dir,
            SYSTEM_NAMESPACE,
            f"fleet-shard-{shard}-{size}",
            extra_args=(
                "--selector",
                f"{SHARD_LABEL}={shard}",
                "--lease-name",
                f"lockstep-bench-shard-{shard}",
            ),
            extra_env={"LOCKSTEP_KEEP_FINISHED_JOBS": "-1"},
        )
        for shard in SHARDS
    ]
    halves = [len(range(k, size, len(SHARDS))) for k in range(len(SHARDS))]
    started = time.monotonic()
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_leader(timeout=120)
        pids = [int(p.process.pid) for p in processes if p.process is not None]
        checks = [reconciled(p, half) for p, half in zip(processes, halves, strict=True)]
        shards = measure(pids, started, lambda: all(c() for c in checks), newest, bed, args)
        shards["instances_peak_rss_mib"] = " + ".join(
            str(mib(sample_process(pid).peak_rss_bytes)) for pid in pids
        )
    except BaseException:
        for process in processes:
            log(f"{process.log_file.name} tail:\n{process.log()[-2000:]}")
        raise
    finally:
        for process in processes:
            process.stop()
    return {"one": one, "2 shards": shards}
