"""Lockstep benchmarks: what the operator costs, how it scales, how close it is to the floor.

    PYTHONPATH=tools .venv/bin/python bench/run.py [--quick] [--profile]

Starts a control plane, pod agent and PostgreSQL of its own (in --state-dir, a fresh directory
under /tmp by default; removed at the end unless --keep), then runs:

1. latency (bench/latency.py): DatabaseMigration created → Job created, and Job succeeded →
   Ready=True, on the real pod agent, against a floor client (bench/floor_client.py) that
   does the same create → watch → patch sequence with no logic, in the same run;
2. API cost: requests per migration from the API server's own metrics (one FlowSchema per
   identity and request kind), against the floor client's; requests while idle;
5. gate latency: Job succeeded → the waiting app pod's scheduling gate lifted;
3. scale (bench/scale.py): N migrations across 50 namespaces, Jobs finished by a stand-in
   kubelet (bench/standin_kubelet.py): time until all are Ready, CPU seconds, peak and idle RSS,
   idle CPU, for the operator and the floor client, and how they grow with N;
4. runner overhead (bench/runner_overhead.py): `lockstep run` on 200 SQL files vs psql, and
   Lockstep's Alembic path vs `alembic upgrade head`.

Prints a table (figure, Lockstep, floor, ratio) and writes JSON: bench/results/bench.json with
--quick (`make bench`, under 5 minutes), bench/results/bench-full.json without (about 35).
--profile samples the operator with py-spy during the latency and scale stages and writes the
collapsed stacks and a summary next to the JSON. --trace runs the operator as
bench/traced_operator.py and prints, beside the table, how long each hop of created → Job took
inside it (Kopf's stream and worker, the handler, the pass, the Secret GET, the Job POST:
benchlib.reaction_trace).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import latency
import psycopg
import runner_overhead
import scale
from benchlib import common, profiling, reaction_trace
from benchlib.bed import test_bed
from benchlib.common import REPO, log
from benchlib.table import render, rows_of
from sqlalchemy.engine import make_url

RESULTS = REPO / "bench" / "results"
STAGES = ("latency", "scale", "runner")


@dataclass(frozen=True)
class Plan:
    mode: str
    latency_samples: int
    gate_samples: int
    concurrency: int
    latency_idle_seconds: float
    scale_sizes: tuple[int, ...]
    namespaces: int
    scale_idle_seconds: float
    runner_files: int
    runner_repeats: int


QUICK = Plan("quick", 10, 5, 2, 5.0, (20, 80), 10, 5.0, 200, 3)
FULL = Plan("full", 100, 30, 2, 60.0, (100, 250, 500, 1000), 50, 60.0, 200, 7)


# --------------------------------------------------------------------------- running


def runner_report_fallback(admin_url: str, work: Path) -> str:
    """The runner's JSON report for the quickstart files, from a local `lockstep run`."""
    source = work / "quickstart-sql"
    source.mkdir(parents=True, exist_ok=True)
    for name, text in latency.quickstart_files().items():
        (source / name).write_text(text)
    database = f"bench_report_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}"')
        connection.execute(f'CREATE DATABASE "{database}"')
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    result_file = work / "quickstart-report.json"
    lockstep = str(Path(sys.executable).parent / "lockstep")
    subprocess.run(
        [
            lockstep,
            "run",
            "--tool",
            "sql",
            "--source",
            str(source),
            "--result-file",
            str(result_file),
        ],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    return result_file.read_text().strip()


def profile_report(path: Path) -> str:
    """Areas (profiling.PROFILE_AREAS), inside the API calls, and the top functions."""
    lines = [f"py-spy samples of the operator: {path.name}", "", "by area:"]
    areas = profiling.profile_areas(path)
    busy = sum(share for area, share in areas if not area.startswith("waiting")) or 1.0
    for area, share in areas:
        of_busy = "" if area.startswith("waiting") else f" ({100 * share / busy:4.1f}% of busy)"
        lines.append(f"  {share:5.1f}%{of_busy}  {area}")
    lines += ["", "inside lockstep/kube/ calls:"]
    inside = profiling.profile_areas(path, profiling.CLIENT_AREAS, "lockstep/kube/")
    lines += [f"  {share:5.1f}%  {area}" for area, share in inside]
    lines += ["", "top functions (inclusive, self):"]
    lines += [f"  {line}" for line in profiling.summarize_profile(path, focus=("lockstep", "kopf"))]
    return "\n".join(lines) + "\n"


def profiler(
    enabled: bool, directory: Path, name: str
) -> Callable[[int], Callable[[], None]] | None:
    if not enabled:
        return None

    def start(pid: int) -> Callable[[], None]:
        stop_cpu = profiling.start_py_spy(pid, directory / f"{name}-cpu.txt")
        stop_wall = profiling.start_py_spy(pid, directory / f"{name}-wall.txt", idle=True)

        def stop() -> None:
            stop_cpu()
            stop_wall()

        return stop

    return start


class LoadSampler:
    """The 1-minute load average every 10 s while the bench runs (others share the machine)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(10.0):
            self.samples.append(os.getloadavg()[0])

    def result(self) -> dict[str, float]:
        self.stop.set()
        values = self.samples or [os.getloadavg()[0]]
        return {
            "min": round(min(values), 2),
            "mean": round(sum(values) / len(values), 2),
            "max": round(max(values), 2),
        }


def traced_operator(state_dir: Path) -> Path:
    """Run the operator as bench/traced_operator.py (this checkout's Lockstep, each hop of the
    reaction path timed into the file returned)."""
    from testbed import operatorprocess

    state_dir.mkdir(parents=True, exist_ok=True)
    trace_file = state_dir / "reaction-trace.jsonl"
    wrapper = state_dir / "traced-lockstep"
    bench = REPO / "bench"
    script = bench / "traced_operator.py"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{bench}:$PYTHONPATH" exec "{sys.executable}" "{script}" "$@"\n'
    )
    wrapper.chmod(0o755)
    os.environ["LOCKSTEP_BENCH_TRACE"] = str(trace_file)
    operatorprocess.LOCKSTEP = wrapper
    return trace_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short run of `make bench`")
    parser.add_argument("--output", type=Path, help="JSON results (default: bench/results/...)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    parser.add_argument("--state-dir", type=Path, help="test bed state (default: a fresh tmp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the test bed running")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator")
    parser.add_argument("--samples", type=int, help="latency samples (override)")
    parser.add_argument("--sizes", help="scale sizes, comma-separated (override)")
    parser.add_argument("--idle-seconds", type=float, help="scale idle window (override)")
    parser.add_argument(
        "--lockstep",
        type=Path,
        help="the `lockstep` executable the operator runs as (default: the venv's): to compare "
        "a build with a fix against the current one",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="one more argument of `lockstep operator` in the latency stage (repeat it), "
        "e.g. --operator-arg=--watch-secrets",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="time each hop of created → Job inside the operator (benchlib.reaction_trace)",
    )
    parser.add_argument("--render", type=Path, help="print the table of a results file; no run")
    args = parser.parse_args(argv)
    if args.render:
        print(render(rows_of(json.loads(args.render.read_text()))))
        return 0
    if args.lockstep and args.trace:
        parser.error("--trace runs this checkout's operator: it cannot be combined with --lockstep")
    if args.lockstep:
        from testbed import operatorprocess

        operatorprocess.LOCKSTEP = args.lockstep.resolve()
    plan = QUICK if args.quick else FULL
    if args.samples:
        plan = Plan(**{**asdict(plan), "latency_samples": args.samples})
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        plan = Plan(**{**asdict(plan), "scale_sizes": sizes})
    if args.idle_seconds is not None:
        plan = Plan(**{**asdict(plan), "scale_idle_seconds": args.idle_seconds})
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    output = args.output or RESULTS / ("bench.json" if args.quick else "bench-full.json")
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="lockstep-bench-"))
    profiles = output.parent / "profiles"
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = common.load_average()
    load = LoadSampler()
    log(
        f"{plan.mode} run, stages {', '.join(stages)}; load average {load_start}; state {state_dir}"
    )
    result: dict[str, Any] = {"mode": plan.mode, "plan": asdict(plan)}
    if args.lockstep:
        result["operator_executable"] = str(args.lockstep)
    trace_file = traced_operator(state_dir) if args.trace else None
    with test_bed(state_dir, keep=args.keep) as bed:
        result["machine"] = common.machine(bed.kube_version())
        log_dir = state_dir / "logs"
        report = None
        if "latency" in stages:
            result["latency"] = latency.run(
                bed,
                plan.latency_samples,
                plan.gate_samples,
                plan.concurrency,
                plan.latency_idle_seconds,
                log_dir,
                profiler(args.profile, profiles, f"{plan.mode}-latency"),
                operator_args=tuple(args.operator_arg),
            )
            report = result["latency"]["runner_report"]
            if trace_file is not None:
                result["latency"]["trace"] = reaction_trace.hops(trace_file)
        if "scale" in stages:
            report = report or runner_report_fallback(bed.pg_admin_url, bed.work)
            result["scale"] = scale.run(
                bed,
                list(plan.scale_sizes),
                plan.namespaces,
                plan.scale_idle_seconds,
                report,
                log_dir,
                profiler(args.profile, profiles, f"{plan.mode}-scale"),
            )
        if "runner" in stages:
            result["runner"] = runner_overhead.run(
                bed.pg_admin_url, bed.work, plan.runner_files, plan.runner_repeats
            )
    result["load_average"] = {
        "start": load_start,
        "end": common.load_average(),
        "during_1min": load.result(),
    }
    result["started_at"] = started_at
    result["duration_seconds"] = round(time.monotonic() - started, 1)
    rows = rows_of(result)
    result["table"] = [{**asdict(r), "ratio": r.ratio} for r in rows]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if args.profile:
        for path in sorted(profiles.glob(f"{plan.mode}-*.txt")):
            if path.name.endswith(("-cpu.txt", "-wall.txt")):
                path.with_suffix(".summary").write_text(profile_report(path))
    machine = result["machine"]
    print(render(rows))
    if "trace" in result.get("latency", {}):
        print(reaction_trace.render(result["latency"]["trace"]))
    print(
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, Python "
        f"{machine['python']}, Kubernetes {machine['kubernetes']}; load average "
        f"{load_start} at start, {result['load_average']['end']} at end, 1-min load during "
        f"the run {result['load_average']['during_1min']}; {result['duration_seconds']:.0f}s in all"
    )
    log(f"wrote {output}")
    if not args.keep and args.state_dir is None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
