"""The labelled classifier corpus (tests/data/classify_corpus): loading it and scoring a verdict.

A case is a list of migration files in plan order, a label (``dangerous``: needs a person's
approval; ``safe``) and the effects the integration test observes on the real database.
Scoring runs Lockstep's classifier over each case and counts dangerous cases caught and
safe cases flagged, the numbers issue 19 asks for.  Also used by
bench/classify_vs_squawk.py, so the bench and the tests read the same corpus the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import yaml

CORPUS_DIR: Final = Path(__file__).resolve().parents[1] / "data" / "classify_corpus"
Engine = Literal["postgresql", "mysql"]
Label = Literal["dangerous", "safe"]
# Effects that on their own make a case dangerous (see the corpus files' headers).
DANGEROUS_EFFECTS: Final = {
    "postgresql": frozenset({"fails", "rewrite", "scan_under_lock", "names_lost", "rows_lost"}),
    "mysql": frozenset({"fails", "copy", "locks_writes", "names_lost", "rows_lost"}),
}


@dataclass(frozen=True)
class Case:
    """One labelled migration: files in plan order, the label and the observable effects."""

    id: str
    files: tuple[str, ...]
    label: Label
    source: str
    why: str
    effects: frozenset[str]
    autocommit: bool = False
    basis: str = ""
    basis_safe: str = ""

    def file_names(self) -> list[str]:
        """Lockstep-style names (``V1__<id>.sql`` ...), so file-level rules apply as in a plan."""
        return [
            f"V{number}__{self.id.replace('-', '_')}.sql"
            for number in range(1, len(self.files) + 1)
        ]


@dataclass(frozen=True)
class Corpus:
    engine: Engine
    setup: str
    cases: tuple[Case, ...]

    def labelled(self, label: Label) -> list[Case]:
        return [case for case in self.cases if case.label == label]


def load(engine: Engine) -> Corpus:
    """The corpus of ``engine`` (``postgresql`` or ``mysql``)."""
    document = yaml.safe_load((CORPUS_DIR / f"{engine}.yaml").read_text())
    cases = tuple(
        Case(
            id=raw["id"],
            files=tuple(raw["files"]),
            label=raw["label"],
            source=raw["source"],
            why=raw["why"],
            effects=frozenset(raw.get("effects") or ()),
            autocommit=bool(raw.get("autocommit", False)),
            basis=raw.get("basis", ""),
            basis_safe=raw.get("basis_safe", ""),
        )
        for raw in document["cases"]
    )
    return Corpus(engine, document["setup"], cases)


@dataclass
class Score:
    """Dangerous cases caught and safe cases flagged by one engine over one corpus."""

    dangerous: int = 0
    caught: int = 0
    safe: int = 0
    flagged: int = 0
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.dangerous if self.dangerous else 1.0

    @property
    def false_positive_rate(self) -> float:
        return self.flagged / self.safe if self.safe else 0.0


def score(cases: Iterable[Case], flags: Callable[[Case], bool]) -> Score:
    """Count how ``flags`` (True: the case needs approval) does against the labels."""
    result = Score()
    for case in cases:
        flagged = flags(case)
        if case.label == "dangerous":
            result.dangerous += 1
            result.caught += flagged
            if not flagged:
                result.missed.append(case.id)
        else:
            result.safe += 1
            result.flagged += flagged
            if flagged:
                result.false_alarms.append(case.id)
    return result


def lockstep_flags(engine: Engine, schema_sql: str | None = None) -> Callable[[Case], bool]:
    """Lockstep's verdict on a case: does its report need approval?

    With ``schema_sql`` (the corpus's setup) the classifier knows the existing columns'
    types, as the plan Job does from the live catalogs; without it, only the plan's text.
    """
    from lockstep import classify
    from lockstep.classify import schema

    known = schema.from_sql(schema_sql, engine) if schema_sql is not None else None

    def flags(case: Case) -> bool:
        files = [
            classify.SqlFile(name, sql)
            for name, sql in zip(case.file_names(), case.files, strict=True)
        ]
        return classify.classify(files, engine, schema=known).destructive

    return flags


def label_problems(cases: Sequence[Case], engine: Engine) -> list[str]:
    """Cases whose label disagrees with their declared effects without saying why."""
    problems = []
    for case in cases:
        risky = case.effects & DANGEROUS_EFFECTS[engine]
        if case.label == "dangerous" and not risky and not case.basis:
            problems.append(f"{case.id}: dangerous, but no dangerous effect and no basis")
        if case.label == "safe" and risky and not case.basis_safe:
            problems.append(f"{case.id}: safe, but effects {sorted(risky)} and no basis_safe")
    return problems


LIVE_FILE: Final = CORPUS_DIR / "live.yaml"


@dataclass(frozen=True)
class LiveCase:
    """A case whose verdict needs the live database: its engine, that engine's setup and
    the small-table row threshold to classify it with."""

    engine: Engine
    setup: str
    case: Case
    small_table_rows: int = 10_000


def load_live() -> list[LiveCase]:
    """The cases of tests/data/classify_corpus/live.yaml."""
    document = yaml.safe_load(LIVE_FILE.read_text())
    return [
        LiveCase(
            engine=raw["engine"],
            setup=document["setup"][raw["engine"]],
            case=Case(
                id=raw["id"],
                files=tuple(raw["files"]),
                label=raw["label"],
                source=raw["source"],
                why=raw["why"],
                effects=frozenset(raw.get("effects") or ()),
                autocommit=bool(raw.get("autocommit", False)),
                basis=raw.get("basis", ""),
                basis_safe=raw.get("basis_safe", ""),
            ),
            small_table_rows=int(raw.get("small_table_rows", 10_000)),
        )
        for raw in document["cases"]
    ]
