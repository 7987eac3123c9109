"""Lockstep's change classifier beside squawk, on the labelled corpus and on 5,000 statements.

One run prints the table issue 19 asks for: dangerous cases caught and safe cases flagged
per engine (tests/data/classify_corpus, every case's effects checked on a real populated
PostgreSQL and MariaDB by tests/integration/test_classify_corpus_effects.py), and the
whole-process time of each tool on a generated file of 5,000 PostgreSQL statements (and
20,000, to show the time grows linearly).

* squawk: the ``squawk`` binary of the PyPI package ``squawk-cli`` (pinned in the dev
  extras), run once over one file per migration file of the corpus; a case is flagged when
  any of its files has a violation.  Two rows: every rule squawk runs by default, and its
  safety rules only (style and hygiene rules, listed in ``STYLE_RULES``, left out).
  squawk reads PostgreSQL only.
* Lockstep: ``lockstep.classify`` on each case's files in plan order (a case needs approval
  when its report is destructive), from the plan's text alone and with the existing tables'
  columns known, as the plan Job knows them from the live catalogs (here read from the
  corpus's setup script).
* Times: wall and CPU (user + system of the child) of ``lockstep classify FILE`` and
  ``squawk --reporter json FILE`` as whole processes, best of ``--repeats``.  The machine's
  load average is printed with them: on a shared machine wall time is CPU time stretched by
  the load.

Usage: ``python bench/classify_vs_squawk.py [--repeats 3]`` (after ``make install``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests" / "support")]

import classify_corpus  # noqa: E402 - the corpus reader the tests use

# squawk rules about style or hygiene, not about what a statement does to a live database.
STYLE_RULES: Final = (
    "prefer-robust-stmts",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamptz",
    "ban-char-field",
    "require-timeout-settings",
    "require-lock-timeout",
    "require-statement-timeout",
)
BIN: Final = Path(sys.executable).parent


def squawk_binary() -> str:
    found = shutil.which("squawk", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise SystemExit("squawk not found: `make install` installs squawk-cli (dev extras)")
    return found


def squawk_flags(cases: Sequence[classify_corpus.Case], exclude: Sequence[str]) -> set[str]:
    """Ids of the cases squawk reports a violation for."""
    owner: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="squawk-corpus-") as directory:
        for case in cases:
            for name, sql in zip(case.file_names(), case.files, strict=True):
                path = Path(directory) / f"{case.id}--{name}"
                path.write_text(sql + "\n")
                owner[str(path)] = case.id
        command = [squawk_binary(), "--reporter", "json", *sorted(owner)]
        if exclude:
            command.insert(1, f"--exclude={','.join(exclude)}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    violations = json.loads(done.stdout or "[]")
    return {owner[violation["file"]] for violation in violations}


def row(
    name: str,
    postgres: classify_corpus.Score | None,
    mysql: classify_corpus.Score | None,
    seconds: str,
) -> str:
    def cells(score: classify_corpus.Score | None) -> str:
        if score is None:
            return "n/a | n/a"
        return f"{score.caught}/{score.dangerous} | {score.flagged}/{score.safe}"

    return f"| {name} | {cells(postgres)} | {cells(mysql)} | {seconds} |"


def timed(command: Sequence[str], repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of ``command`` as a whole process."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def generated(engine: classify_corpus.Engine, count: int) -> str:
    """``count`` statements cycled from the corpus, over 50 differently named tables."""
    statements: list[str] = []
    cases = classify_corpus.load(engine).cases
    round_ = 0
    while len(statements) < count:
        for case in cases:
            for sql in case.files:
                for part in sql.split(";\n"):
                    text = part.strip().rstrip(";")
                    if text and not text.upper().startswith(("BEGIN", "COMMIT")):
                        table = f"accounts_{round_ % 50}"
                        statements.append(text.replace("accounts", table) + ";")
            round_ += 1
    return "\n".join(statements[:count]) + "\n"


def squawk_command(path: Path) -> list[str]:
    """squawk with its JSON reporter, as Lockstep prints JSON: squawk's default terminal
    reporter draws every violation with its source and takes seconds on a big file."""
    return [squawk_binary(), "--reporter", "json", str(path)]


def lockstep_command(path: Path, engine: str) -> list[str]:
    return [
        str(BIN / "lockstep"), "classify", str(path), "--engine", engine,
        "--salt", "bench", "--to", "head", "--result-file", os.devnull,
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=3)
    args = options.parse_args(argv)
    postgres, mysql = classify_corpus.load("postgresql"), classify_corpus.load("mysql")
    version = subprocess.run(
        [squawk_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    def squawk_score(exclude: Sequence[str]) -> classify_corpus.Score:
        flagged = squawk_flags(postgres.cases, exclude)
        return classify_corpus.score(postgres.cases, lambda case: case.id in flagged)

    def lockstep_score(corpus: classify_corpus.Corpus, live: bool) -> classify_corpus.Score:
        flags: Callable[[classify_corpus.Case], bool] = classify_corpus.lockstep_flags(
            corpus.engine, corpus.setup if live else None
        )
        return classify_corpus.score(corpus.cases, flags)

    scores = {
        "squawk-all": squawk_score(()),
        "squawk-safety": squawk_score(STYLE_RULES),
        "lockstep-text": (lockstep_score(postgres, False), lockstep_score(mysql, False)),
        "lockstep-live": (lockstep_score(postgres, True), lockstep_score(mysql, True)),
    }
    times: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="classify-bench-") as directory:
        files = {}
        for engine, count in (("postgresql", 5000), ("postgresql", 20000), ("mysql", 5000)):
            path = Path(directory) / f"{engine}-{count}.sql"
            path.write_text(generated(engine, count))  # type: ignore[arg-type]
            files[engine, count] = path
        for key, command in {
            ("squawk", 5000): squawk_command(files["postgresql", 5000]),
            ("squawk", 20000): squawk_command(files["postgresql", 20000]),
            ("lockstep", 5000): lockstep_command(files["postgresql", 5000], "postgresql"),
            ("lockstep", 20000): lockstep_command(files["postgresql", 20000], "postgresql"),
            ("lockstep-mysql", 5000): lockstep_command(files["mysql", 5000], "mysql"),
        }.items():
            wall, cpu = timed(command, args.repeats)
            times[f"{key[0]}-{key[1]}"] = f"{wall:.2f} s wall / {cpu:.2f} s CPU"

    def seconds(tool: str) -> str:
        return f"{times[tool + '-5000']} (20,000: {times[tool + '-20000']})"

    print(f"corpus: PostgreSQL {len(postgres.labelled('dangerous'))} dangerous + "
          f"{len(postgres.labelled('safe'))} safe, MySQL/MariaDB "
          f"{len(mysql.labelled('dangerous'))} + {len(mysql.labelled('safe'))}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print()
    print("| | PG dangerous caught | PG safe flagged | MySQL caught | MySQL flagged "
          "| 5,000 PG statements, whole process (best of "
          f"{args.repeats}) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    print(row(f"{version} (PyPI squawk-cli), all default rules", scores["squawk-all"],
              None, seconds("squawk")))  # fmt: skip
    print(row(f"{version}, safety rules", scores["squawk-safety"], None, "same binary"))
    text_pg, text_my = scores["lockstep-text"]
    live_pg, live_my = scores["lockstep-live"]
    print(row("Lockstep, plan text only", text_pg, text_my, seconds("lockstep")))
    print(row("Lockstep, plan + live schema (the plan Job)", live_pg, live_my, "same"))
    print()
    print(f"Lockstep on 5,000 MySQL statements: {times['lockstep-mysql-5000']}")
    print()
    for name, score in (
        ("squawk safety rules", scores["squawk-safety"]),
        ("Lockstep text only, PostgreSQL", text_pg),
        ("Lockstep text only, MySQL", text_my),
        ("Lockstep + schema, PostgreSQL", live_pg),
        ("Lockstep + schema, MySQL", live_my),
    ):
        print(f"{name}: missed {score.missed or '-'}; false alarms {score.false_alarms or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
