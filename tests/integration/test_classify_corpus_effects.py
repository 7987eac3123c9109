"""Each labelled corpus case does on a real, populated database what its label claims.

The corpus (tests/data/classify_corpus) labels statements dangerous or safe from the rule
sources (squawk, strong_migrations, Atlas, the database docs) and declares the effects that
justify the label: a rewrite, a scan under a write-blocking lock, a table copy, lost names
or rows, a failure.  Here every case runs on the private test PostgreSQL and MariaDB and
the observed effects must be exactly the declared ones (tests/support/corpus_observe.py
says how each is measured), so a label that rests on a wrong belief about the database
fails.  The plan Job's reading of the live schema is checked here too: read from the
populated databases, it types every column as the classifier reads the setup's DDL, and with
it the classifier raises no false alarm on the corpus.  The classifier's accuracy on the
same corpus is checked in
tests/unit/test_classify_corpus_scores.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import classify_corpus
from corpus_observe import MariadbObserver, PostgresObserver
from lockstep import classify, database
from lockstep.classify import schema
from lockstep.classify.plan import Schema
from lockstep.pod import live_schema

pytestmark = pytest.mark.integration

POSTGRES = classify_corpus.load("postgresql")
MYSQL = classify_corpus.load("mysql")


@pytest.fixture(scope="module")
def postgres(postgres_admin_url: str) -> Iterator[PostgresObserver]:
    observer = PostgresObserver(postgres_admin_url, POSTGRES)
    yield observer
    observer.close()


@pytest.fixture(scope="module")
def mariadb(mariadb_admin_url: str) -> MariadbObserver:
    return MariadbObserver(mariadb_admin_url, MYSQL)


@pytest.mark.parametrize("case", POSTGRES.cases, ids=lambda case: case.id)
def test_postgresql_case_does_what_its_label_claims(
    postgres: PostgresObserver, case: classify_corpus.Case
) -> None:
    observed = postgres.observe(case)
    assert sorted(observed) == sorted(case.effects), f"{case.id}: {case.why}"


@pytest.mark.parametrize("case", MYSQL.cases, ids=lambda case: case.id)
def test_mariadb_case_does_what_its_label_claims(
    mariadb: MariadbObserver, case: classify_corpus.Case
) -> None:
    observed = mariadb.observe(case)
    assert sorted(observed) == sorted(case.effects), f"{case.id}: {case.why}"


def _live_schema(url: str, engine: str) -> Schema:
    connection_engine = database.make_engine(url)
    try:
        with connection_engine.connect() as connection:
            return live_schema.read(connection, engine)
    finally:
        connection_engine.dispose()


def _assert_live_schema_serves_the_plan(
    corpus: classify_corpus.Corpus, live: Schema, engine: classify_corpus.Engine
) -> None:
    """The catalogs give every column the setup declares, typed as the classifier reads
    DDL; classified with them, the corpus meets issue 19's goal."""
    declared = schema.from_sql(corpus.setup, engine)
    for table, columns in declared.items():
        assert {name: live[table][name] for name in columns} == dict(columns), table
    flags = classify_corpus.lockstep_flags(engine)
    known = {table: dict(columns) for table, columns in live.items()}

    def with_live(case: classify_corpus.Case) -> bool:
        files = [classify.SqlFile(n, s) for n, s in zip(case.file_names(), case.files, strict=True)]
        return classify.classify(files, engine, schema=known).destructive

    result = classify_corpus.score(corpus.cases, with_live)
    assert result.recall == classify_corpus.score(corpus.cases, flags).recall
    assert result.false_alarms == []


def test_postgresql_live_schema_gives_the_classifier_the_old_types(
    postgres: PostgresObserver,
) -> None:
    url = make_url(postgres.admin_url).set(database=postgres.template)
    live = _live_schema(url.render_as_string(hide_password=False), "postgresql")
    _assert_live_schema_serves_the_plan(POSTGRES, live, "postgresql")


def test_mariadb_live_schema_gives_the_classifier_the_old_types(mariadb_url: str) -> None:
    observer = MariadbObserver(mariadb_url, MYSQL)
    with observer._connect(make_url(mariadb_url).database) as db, db.cursor() as cursor:
        cursor.execute(MYSQL.setup)
        while cursor.nextset():
            pass
    _assert_live_schema_serves_the_plan(MYSQL, _live_schema(mariadb_url, "mysql"), "mysql")


def _classify_printed_sql(tmp_path: Path, sql: str, url: str | None) -> dict[str, Any]:
    printed = tmp_path / "printed.sql"
    printed.write_text(sql)
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    command = [sys.executable, "-m", "lockstep.cli.main", "classify", str(printed)]
    options = ["--engine", "postgresql", "--salt", "s", "--to", "head"]
    done = subprocess.run(
        [*command, *options, "--result-file", str(tmp_path / "result.json")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    plan: dict[str, Any] = json.loads(done.stdout)
    return plan


def test_lockstep_classify_asks_the_database_for_old_types_only_when_it_must(
    postgres: PostgresObserver, tmp_path: Path
) -> None:
    """SQL a tool printed in its image: with $DATABASE_URL, a varchar widening of an
    existing column is judged by the live type (no approval); without it, or with a database
    that cannot be reached, the text alone asks for approval."""
    url = make_url(postgres.admin_url).set(database=postgres.template)
    live = url.render_as_string(hide_password=False)
    widening = "ALTER TABLE accounts ALTER COLUMN nick TYPE varchar(50);\n"
    narrowing = "ALTER TABLE accounts ALTER COLUMN nick TYPE varchar(10);\n"
    assert _classify_printed_sql(tmp_path, widening, live)["classification"] == "Additive"
    assert _classify_printed_sql(tmp_path, narrowing, live)["classification"] == "Destructive"
    assert _classify_printed_sql(tmp_path, widening, None)["classification"] == "Destructive"
    unreachable = url.set(port=1).render_as_string(hide_password=False)
    assert _classify_printed_sql(tmp_path, widening, unreachable)["classification"] == (
        "Destructive"
    )
