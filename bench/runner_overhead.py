"""Stage 4: runner overhead. `lockstep run` against psql, and against `alembic upgrade head`.

A migration set of `files` versioned SQL files (each creates a table, an index and inserts a
row) is applied to a fresh PostgreSQL database, wall time measured around the whole command
(process start and imports included, as in a Job):

* `lockstep run --tool sql` (takes the migration lock itself: no sidecar here);
* `psql -1 -f FILE` once per file, in file order: one process and one transaction per file;
* one `psql` session that runs each file between BEGIN and COMMIT (the strict floor);
* `lockstep run` and the psql session on 1 file: the fixed cost of a run, so that
  (200 files - 1 file) / 199 is the cost per file.

The same statements as `files` Alembic revisions (`op.execute`), applied by
`lockstep run --tool alembic` and by `alembic upgrade head` directly.

One big file (`big_statements` INSERTs, about 100 bytes each: 50,000 make 5 MB), as one
migration: `lockstep run --tool sql` against `psql -1 -f FILE` (one process, one transaction: the
floor). `lockstep apply` reads its files from a ConfigMap in a local-mode YAML, and a ConfigMap
holds at most 1 MiB (local mode refuses more, as the API server would): it gets the largest such
file that fits (about 10,000 INSERTs), against `psql -1 -f` on that same file.

Each command runs `repeats` times, each time on a database of its own; the median counts.
The Lockstep that runs is this checkout's (its ``operator/`` first on PYTHONPATH, whatever the
virtualenv has installed), and the baseline's beside it; the bytecode of both is compiled first,
as the image's build compiles it (a run that compiles every module it imports pays for that on
each start: the image sets PYTHONDONTWRITEBYTECODE, and so may the shell the bench runs in).
Run on its own (starts, or reuses, the test bed's PostgreSQL under $LOCKSTEP_DB_DIR) it prints
each case beside its floor::

    LOCKSTEP_DB_DIR=/tmp/me-db PYTHONPATH=tools:bench .venv/bin/python bench/runner_overhead.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchlib.common import REPO, log
from benchlib.runner_sources import (
    Databases,
    count_tables,
    find_psql,
    session,
    write_alembic_set,
    write_apply_file,
    write_apply_yaml,
    write_big_file,
    write_sql_set,
)

VENV_BIN = Path(sys.executable).parent
# What the operator's Jobs add to `lockstep run` (contract.migration_args): the DatabaseMigration
# claims its version table, which loads the claim's modules and costs a query or two.
AS_A_JOB = ("--owner", "bench/runner")


def run_checked(
    argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    result = subprocess.run(
        list(argv), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


Command = Callable[[str, dict[str, str]], None]  # (database URL, environment)


def lockstep_env(tree: Path) -> dict[str, str]:
    """The environment that runs the Lockstep of ``tree`` (its ``operator/`` holds the
    package), its bytecode compiled first, as the image's is."""
    operator = tree / "operator"
    run_checked([sys.executable, "-m", "compileall", "-q", str(operator)])
    paths = [str(operator), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def measure(
    databases: Databases,
    repeats: int,
    cases: dict[str, tuple[str, Command]],
    expected_tables: int,
    baseline_env: dict[str, str] | None = None,
    lockstep_keys: Sequence[str] = (),
    lockstep_environ: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each case ``repeats`` times, interleaved (a load that comes and goes hits them all
    alike), each run on a database of its own; the Lockstep cases (``lockstep_keys``) in
    ``lockstep_environ``; with ``baseline_env``, they run a second time in it too (key
    ``<key>_baseline``): the code before a change, say."""
    runs: list[tuple[str, str, Command, dict[str, str]]] = []
    for key, (what, command) in cases.items():
        ours = key in lockstep_keys
        environ = lockstep_environ if ours and lockstep_environ is not None else os.environ
        runs.append((key, what, command, dict(environ)))
        if baseline_env is not None and key in lockstep_keys:
            runs.append((f"{key}_baseline", f"{what} (baseline)", command, baseline_env))
    times: dict[str, list[float]] = {key: [] for key, *_ in runs}
    for repeat in range(repeats):
        for key, what, command, env in runs[repeat % len(runs) :] + runs[: repeat % len(runs)]:
            url = databases.fresh()
            started = time.monotonic()
            command(url, env)
            times[key].append(time.monotonic() - started)
            tables = count_tables(url)
            if tables != expected_tables:
                raise RuntimeError(
                    f"{what}: {tables} tables after the run, expected {expected_tables}"
                )
    result = {}
    for key, what, *_ in runs:
        median = statistics.median(times[key])
        log(f"runner: {what}: median {median:.2f}s over {repeats} run(s)")
        result[key] = {
            "median_seconds": round(median, 3),
            "runs": [round(t, 3) for t in times[key]],
        }
    return result


def run(
    admin_url: str,
    work: Path,
    files: int,
    repeats: int,
    big_statements: int = 50_000,
    per_file: bool = True,
    baseline: Path | None = None,
) -> dict[str, Any]:
    """All cases; ``baseline``: a source tree (its ``operator/`` holds a ``lockstep`` package)
    whose Lockstep runs beside this one, interleaved, as ``<key>_baseline``."""
    psql = find_psql()
    base = work / "runner"
    shutil.rmtree(base, ignore_errors=True)
    sql_dir = base / "sql"
    paths = write_sql_set(sql_dir, files)
    session_script = base / "all-in-one-session.sql"
    session_script.write_text(session(paths))
    # One file: what a run costs before the first migration (process, imports, connection,
    # lock, history table); the difference to 200 files is the cost per file.
    one_dir = base / "sql-one"
    one_script = base / "one-in-a-session.sql"
    one_script.write_text(session(write_sql_set(one_dir, 1)))
    alembic_dir = write_alembic_set(base / "alembic", files)
    big_dir = base / "sql-big"
    big_file = write_big_file(big_dir, big_statements)
    apply_file = write_apply_file(base / "sql-apply")
    apply_yaml = write_apply_yaml(base / "apply.yaml", apply_file)
    lockstep = str(VENV_BIN / "lockstep")
    alembic = str(VENV_BIN / "alembic")
    result_file = base / "result.json"
    databases = Databases(admin_url)
    environ = lockstep_env(REPO)
    baseline_env = lockstep_env(baseline) if baseline is not None else None

    def with_url(env: dict[str, str], url: str) -> dict[str, str]:
        return {**env, "DATABASE_URL": url}

    def lockstep_sql(url: str, env: dict[str, str], source: Path = sql_dir) -> None:
        argv = [lockstep, "run", "--tool", "sql", "--source", str(source), *AS_A_JOB]
        run_checked([*argv, "--result-file", str(result_file)], with_url(env, url))

    def lockstep_sql_one(url: str, env: dict[str, str]) -> None:
        lockstep_sql(url, env, one_dir)

    def psql_session_one(url: str, _: dict[str, str]) -> None:
        run_checked([psql, "-X", "-q", "-f", str(one_script), url])

    def psql_per_file(url: str, _: dict[str, str]) -> None:
        for path in paths:
            run_checked([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path), url])

    def psql_session(url: str, _: dict[str, str]) -> None:
        run_checked([psql, "-X", "-q", "-f", str(session_script), url])

    def lockstep_alembic(url: str, env: dict[str, str]) -> None:
        source = alembic_dir / "migrations"
        argv = [lockstep, "run", "--tool", "alembic", "--source", str(source), *AS_A_JOB]
        run_checked([*argv, "--result-file", str(result_file)], with_url(env, url))

    def alembic_direct(url: str, env: dict[str, str]) -> None:
        run_checked(
            [alembic, "-c", "alembic.ini", "upgrade", "head"], with_url(env, url), alembic_dir
        )

    def lockstep_big(url: str, env: dict[str, str]) -> None:
        lockstep_sql(url, env, big_dir)

    def psql_big(url: str, _: dict[str, str]) -> None:
        run_checked([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(big_file), url])

    def psql_apply_file(url: str, _: dict[str, str]) -> None:
        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(apply_file), url]
        run_checked(argv)

    def lockstep_apply(url: str, env: dict[str, str]) -> None:
        argv = [lockstep, "apply", "-f", str(apply_yaml), "--database-url", url, "-o", "json"]
        run_checked(argv, with_url(env, url), base)

    def imports(_: str, env: dict[str, str]) -> None:
        modules = "lockstep.cli.main, lockstep.pod.runner, lockstep.cli.local"
        run_checked([sys.executable, "-c", f"import {modules}"], env)

    ours = (
        "lockstep_sql",
        "lockstep_sql_one_file",
        "lockstep_alembic",
        "lockstep_imports",
        "lockstep_big",
        "lockstep_apply",
    )

    def group(cases: dict[str, tuple[str, Command]], expected: int) -> dict[str, Any]:
        return measure(databases, repeats, cases, expected, baseline_env, ours, environ)

    result: dict[str, Any] = {
        "load_at_start": round(os.getloadavg()[0], 2),
        "files": files,
        "repeats": repeats,
        "psql": psql,
        "baseline": str(baseline) if baseline else None,
        "big_statements": big_statements,
        "big_file_bytes": big_file.stat().st_size,
        "apply_file_bytes": apply_file.stat().st_size,
    }
    try:
        if per_file:  # 200 processes: slow, and steady; fewer repeats.
            result.update(
                measure(
                    databases,
                    max(1, repeats // 2),
                    {"psql_per_file": ("psql -1 per file", psql_per_file)},
                    files,
                )
            )
        result.update(
            group(
                {
                    "lockstep_sql": ("lockstep run --tool sql", lockstep_sql),
                    "psql_session": ("psql, one session", psql_session),
                },
                files,
            )
        )
        result.update(
            group(
                {
                    "lockstep_sql_one_file": ("lockstep run --tool sql, 1 file", lockstep_sql_one),
                    "psql_session_one_file": ("psql, one session, 1 file", psql_session_one),
                },
                1,
            )
        )
        result.update(
            group(
                {
                    "lockstep_alembic": ("lockstep run --tool alembic", lockstep_alembic),
                    "alembic_direct": ("alembic upgrade head", alembic_direct),
                },
                files,
            )
        )
        result.update(group({"lockstep_imports": ("lockstep imports only", imports)}, 0))
        result.update(
            group(
                {
                    "lockstep_big": ("lockstep run --tool sql, big file", lockstep_big),
                    "psql_big": ("psql -1 -f, big file", psql_big),
                },
                1,
            )
        )
        result.update(
            group(
                {
                    "lockstep_apply": ("lockstep apply, ConfigMap-sized file", lockstep_apply),
                    "psql_apply_file": ("psql -1 -f, ConfigMap-sized file", psql_apply_file),
                },
                1,
            )
        )
    finally:
        databases.drop_all()
    result["load_at_end"] = round(os.getloadavg()[0], 2)
    return result


# --------------------------------------------------------------------------- on its own

CASES = (  # (what, Lockstep's key, floor's key, the floor's name)
    ("N files: lockstep run --tool sql", "lockstep_sql", "psql_session", "one psql session"),
    (
        "1 file: lockstep run --tool sql",
        "lockstep_sql_one_file",
        "psql_session_one_file",
        "one psql session",
    ),
    ("big file: lockstep run --tool sql", "lockstep_big", "psql_big", "psql -1 -f"),
    ("1 MB file: lockstep apply", "lockstep_apply", "psql_apply_file", "psql -1 -f"),
    (
        "revisions: lockstep run --tool alembic",
        "lockstep_alembic",
        "alembic_direct",
        "alembic upgrade head",
    ),
)


def table(result: dict[str, Any]) -> str:
    """Each case beside its floor, both measured in this run (medians)."""
    lines = [
        f"runner overhead, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"median of n={result['repeats']}; {result['files']} files, big file "
        f"{result['big_statements']} statements ({result['big_file_bytes'] / 1e6:.1f} MB), "
        f"ConfigMap-sized file {result['apply_file_bytes'] / 1e6:.2f} MB; 1-minute load "
        f"{result.get('load_at_start')} at the start, {result.get('load_at_end')} at the end "
        f"({os.cpu_count()} cores)",
        f"{'case':42} {'before':>9} {'ratio':>6} {'lockstep':>9} {'floor':>9} {'ratio':>6}  floor",
    ]
    for case, mine, floor, floor_name in CASES:
        what = case.replace("N files", f"{result['files']} files")
        ours, theirs = result[mine]["median_seconds"], result[floor]["median_seconds"]
        before = result.get(f"{mine}_baseline", {}).get("median_seconds")
        shown = f"{before:8.3f}s {before / theirs:5.2f}x" if before else f"{'-':>16}"
        lines.append(
            f"{what:42} {shown} {ours:8.3f}s {theirs:8.3f}s {ours / theirs:5.2f}x  {floor_name}"
        )
    imports_before = result.get("lockstep_imports_baseline", {}).get("median_seconds")
    lines.append(
        f"{'imports only (python -c import ...)':42} "
        + (f"{imports_before:8.3f}s {'':6} " if imports_before else f"{'-':>16} ")
        + f"{result['lockstep_imports']['median_seconds']:8.3f}s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--big-statements", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--work", type=Path, help="scratch directory (default: a new temporary one)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--per-file", action="store_true", help="also psql -1 -f once per file (200 processes)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a source tree (e.g. `git archive main operator | tar -x -C DIR`) whose Lockstep "
        "runs beside this one, interleaved: the 'before' column",
    )
    args = parser.parse_args(argv)
    from testbed import databases

    admin_url = databases.ensure_postgres()
    work = args.work or Path(tempfile.mkdtemp(prefix="lockstep-bench-runner-"))
    try:
        result = run(
            admin_url,
            work,
            args.files,
            args.repeats,
            args.big_statements,
            args.per_file,
            args.baseline,
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
