"""Lockstep benchmarks: what the operator costs, how it scales, how close it is to the floor.

    PYTHONPATH=tools:tests/support .venv/bin/python bench/run.py [--quick] [--profile]

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
collapsed stacks and a summary next to the JSON.
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

import benchlib
import latency
import psycopg
import runner_overhead
import scale
from benchlib import REPO, log, ratio
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


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    figure: str
    value: float | None
    floor: float | None
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.floor)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def latency_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    n = result["samples"]
    for key, label in (("created_to_job", "created → Job"), ("job_to_ready", "Job done → Ready")):
        for stat in ("p50", "p95", "max"):
            rows.append(
                Row(
                    f"1 reaction {label}, {stat} (n={n})",
                    ms(result[key]["operator"][stat]),
                    ms(result[key]["floor"][stat]),
                    "ms",
                )
            )
    api = result["api"]
    rows.append(
        Row(
            "2 API requests per migration",
            api["operator"]["per_migration"],
            api["floor"]["per_migration"],
            "req",
            "writes+reads, not watches/leases",
        )
    )
    idle = result["idle"]
    per_minute = 60.0 / idle["seconds"]
    operator_idle = idle["requests"]["operator"]
    besides = benchlib.work_requests(operator_idle)
    rows.append(
        Row(
            "2 idle requests/min besides watch+lease",
            round(besides * per_minute, 1),
            0.0,
            "req/min",
            ", ".join(f"{k} {v}" for k, v in operator_idle.items()) or "none",
        )
    )
    rows.append(
        Row(
            "2 idle lease requests/min",
            round(operator_idle.get("lease", 0) * per_minute, 1),
            None,
            "req/min",
            "get+update every retry period (2 s)",
        )
    )
    g = result["gate_samples"]
    for stat in ("p50", "p95"):
        rows.append(
            Row(
                f"5 gate: Job done → pod released, {stat} (n={g})",
                ms(result["gate_release"]["operator"][stat]),
                ms(result["gate_release"]["floor"][stat]),
                "ms",
            )
        )
    rows.append(
        Row(
            "  CPU per migration (latency stage)",
            ms(result["cpu_seconds_per_migration"]["operator"]),
            ms(result["cpu_seconds_per_migration"]["floor"]),
            "ms",
        )
    )
    return rows


def scale_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for entry in result["sizes"]:
        size, op, fl = entry["size"], entry["operator"], entry["floor"]
        idle_pct = 100.0 / op["idle_seconds"]
        rows += [
            Row(f"3 N={size}: all Ready", op["all_ready_seconds"], fl["all_ready_seconds"], "s"),
            Row(
                f"3 N={size}: all Jobs created", op["all_jobs_seconds"], fl["all_jobs_seconds"], "s"
            ),
            Row(
                f"3 N={size}: created → Job p95",
                ms(op["created_to_job"]["p95"]),
                ms(fl["created_to_job"]["p95"]),
                "ms",
            ),
            Row(
                f"3 N={size}: Job done → Ready p95",
                ms(op["job_to_ready"]["p95"]),
                ms(fl["job_to_ready"]["p95"]),
                "ms",
            ),
            Row(f"3 N={size}: CPU while busy", op["cpu_seconds"], fl["cpu_seconds"], "s"),
            Row(f"3 N={size}: peak RSS", op["peak_rss_mib"], fl["peak_rss_mib"], "MiB"),
            Row(f"3 N={size}: idle RSS", op["idle_rss_mib"], fl["idle_rss_mib"], "MiB"),
            Row(
                f"3 N={size}: idle CPU",
                round(op["idle_cpu_seconds"] * idle_pct, 2),
                round(fl["idle_cpu_seconds"] * idle_pct, 2),
                "%",
                f"over {op['idle_seconds']:g} s",
            ),
            Row(
                f"3 N={size}: API requests per migration",
                op["api_per_migration"],
                fl["api_per_migration"],
                "req",
            ),
        ]
    sizes = result["sizes"]
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        growth = result["growth"]

        def per(entry: dict[str, Any], side: str) -> float:
            return float(entry[side]["cpu_seconds"]) / float(entry["size"])

        def added(entry: dict[str, Any], side: str) -> float:
            grown = entry[side]["peak_rss_mib"] - entry[side]["rss_before_mib"]
            return float(grown) * 1024 / float(entry["size"])

        span = f"{first['size']}→{last['size']}"
        rows += [
            Row(
                f"3 growth {span}: all Ready, s per migration",
                growth["operator"]["all_ready_seconds"]["per_migration_slope"],
                growth["floor"]["all_ready_seconds"]["per_migration_slope"],
                "s",
                f"linear fit, R² {growth['operator']['all_ready_seconds']['r2']}",
            ),
            Row(
                f"3 growth {span}: CPU per migration at N={last['size']}",
                ms(per(last, "operator")),
                ms(per(last, "floor")),
                "ms",
                f"at N={first['size']}: {ms(per(first, 'operator'))} (floor "
                f"{ms(per(first, 'floor'))}); R² {growth['operator']['cpu_seconds']['r2']}",
            ),
            Row(
                f"3 growth {span}: RSS per added migration at N={last['size']}",
                round(added(last, "operator"), 1),
                round(added(last, "floor"), 1),
                "KiB",
                f"at N={first['size']}: {round(added(first, 'operator'), 1)} (floor "
                f"{round(added(first, 'floor'), 1)})",
            ),
        ]
    return rows


def runner_rows(result: dict[str, Any]) -> list[Row]:
    files = result["files"]
    lockstep_sql = result["lockstep_sql"]["median_seconds"]
    rows = [
        Row(
            f"4 lockstep run, {files} SQL files vs one psql session",
            lockstep_sql,
            result["psql_session"]["median_seconds"],
            "s",
            "BEGIN/COMMIT per file",
        ),
        Row(
            f"4 lockstep run, {files} SQL files vs psql -1 per file",
            lockstep_sql,
            result["psql_per_file"]["median_seconds"],
            "s",
            "one psql process per file",
        ),
        Row(
            f"4 lockstep run --tool alembic vs alembic upgrade head ({files} rev.)",
            result["lockstep_alembic"]["median_seconds"],
            result["alembic_direct"]["median_seconds"],
            "s",
        ),
        Row(
            "  of which: importing lockstep",
            result["lockstep_imports"]["median_seconds"],
            None,
            "s",
            "python -c 'import lockstep.cli.main, lockstep.pod.runner, lockstep.cli.local'",
        ),
    ]
    if "lockstep_sql_one_file" in result:
        one = result["lockstep_sql_one_file"]["median_seconds"]
        psql_one = result["psql_session_one_file"]["median_seconds"]
        per_file = (lockstep_sql - one) / (files - 1)
        psql_per_file = (result["psql_session"]["median_seconds"] - psql_one) / (files - 1)
        rows += [
            Row("4 lockstep run, 1 SQL file vs one psql session", one, psql_one, "s", "fixed cost"),
            Row(
                f"4 lockstep run, cost per file ({files} vs 1 file)",
                ms(per_file),
                ms(psql_per_file),
                "ms",
                "vs the psql session",
            ),
        ]
    return rows


def render(rows: list[Row]) -> str:
    def number(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"

    width = max(len(r.figure) for r in rows)
    header = f"{'figure':<{width}}  {'Lockstep':>10}  {'floor':>10}  {'ratio':>7}  unit     note"
    lines = [header, "-" * len(header)]
    for r in rows:
        mark = "" if r.ratio is None else f"{r.ratio:.2f}x"
        flag = " !" if r.ratio is not None and r.ratio > 2 else ""
        lines.append(
            f"{r.figure:<{width}}  {number(r.value):>10}  {number(r.floor):>10}  "
            f"{mark:>7}  {r.unit:<7}  {r.note}{flag}"
        )
    lines.append("(! = more than 2x its floor)")
    return "\n".join(lines)


def rows_of(result: dict[str, Any]) -> list[Row]:
    rows = []
    if "latency" in result:
        rows += latency_rows(result["latency"])
    if "scale" in result:
        rows += scale_rows(result["scale"])
    if "runner" in result:
        rows += runner_rows(result["runner"])
    return rows


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
    """Areas (benchlib.PROFILE_AREAS), inside the API calls, and the top functions."""
    lines = [f"py-spy samples of the operator: {path.name}", "", "by area:"]
    areas = benchlib.profile_areas(path)
    busy = sum(share for area, share in areas if not area.startswith("waiting")) or 1.0
    for area, share in areas:
        of_busy = "" if area.startswith("waiting") else f" ({100 * share / busy:4.1f}% of busy)"
        lines.append(f"  {share:5.1f}%{of_busy}  {area}")
    lines += ["", "inside lockstep/kube.py calls:"]
    inside = benchlib.profile_areas(path, benchlib.CLIENT_AREAS, "lockstep/kube.py")
    lines += [f"  {share:5.1f}%  {area}" for area, share in inside]
    lines += ["", "top functions (inclusive, self):"]
    lines += [f"  {line}" for line in benchlib.summarize_profile(path, focus=("lockstep", "kopf"))]
    return "\n".join(lines) + "\n"


def profiler(
    enabled: bool, directory: Path, name: str
) -> Callable[[int], Callable[[], None]] | None:
    if not enabled:
        return None

    def start(pid: int) -> Callable[[], None]:
        stop_cpu = benchlib.start_py_spy(pid, directory / f"{name}-cpu.txt")
        stop_wall = benchlib.start_py_spy(pid, directory / f"{name}-wall.txt", idle=True)

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
    parser.add_argument("--render", type=Path, help="print the table of a results file; no run")
    args = parser.parse_args(argv)
    if args.render:
        print(render(rows_of(json.loads(args.render.read_text()))))
        return 0
    if args.lockstep:
        import e2e_operator

        e2e_operator.LOCKSTEP = args.lockstep.resolve()
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
    load_start = benchlib.load_average()
    load = LoadSampler()
    log(
        f"{plan.mode} run, stages {', '.join(stages)}; load average {load_start}; state {state_dir}"
    )
    result: dict[str, Any] = {"mode": plan.mode, "plan": asdict(plan)}
    if args.lockstep:
        result["operator_executable"] = str(args.lockstep)
    with benchlib.test_bed(state_dir, keep=args.keep) as bed:
        result["machine"] = benchlib.machine(bed.kube_version())
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
            )
            report = result["latency"]["runner_report"]
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
        "end": benchlib.load_average(),
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
