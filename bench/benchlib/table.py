"""The table of bench/run.py: its rows (figure, Lockstep, floor, ratio) from a results JSON, for
the latency, API cost, gate, scale and runner stages, and the rendered text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchlib import apimeter
from benchlib.common import ratio

SIDES = ("operator", "floor")


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
    samples = result["samples"]
    kinds = {
        k: v for k, v in api["operator"]["requests"].items() if k not in apimeter.OVERHEAD_KINDS
    }
    rows.append(
        Row(
            "2 API requests per migration",
            api["operator"]["per_migration"],
            api["floor"]["per_migration"],
            "req",
            "; ".join(f"{k} {v / samples:.2g}" for k, v in sorted(kinds.items())),
        )
    )
    for kind in ("create jobs", "patch databasemigrations/status"):
        mine, floor = (api[side].get("execution_ms", {}).get(kind) for side in SIDES)
        if mine is not None and floor is not None:
            rows.append(Row(f"2 API server time per request: {kind}", mine, floor, "ms"))
    resync = result.get("resync")
    if resync:
        m = resync["migrations"]
        rows.append(
            Row(
                f"2 requests per migration per resync ({m} settled)",
                resync["resync_per_migration"],
                None,
                "req",
                f"{resync['resync_cpu_ms_per_migration']} ms CPU each; floor: none",
            )
        )
        rows.append(
            Row(
                f"2 requests per migration at operator restart ({m})",
                resync["restart_per_migration"],
                None,
                "req",
                "first sight of each migration",
            )
        )
    idle = result["idle"]
    per_minute = 60.0 / idle["seconds"]
    operator_idle = idle["requests"]["operator"]
    besides = apimeter.work_requests(operator_idle)
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
