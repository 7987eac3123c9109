"""Each labelled corpus case does on a real, populated database what its label claims.

The corpus (tests/data/classify_corpus) labels statements dangerous or safe from the rule
sources (squawk, strong_migrations, Atlas, the database docs) and declares the effects that
justify the label: a rewrite, a scan under a write-blocking lock, a table copy, lost names
or rows, a failure.  Here every case runs on the private test PostgreSQL and MariaDB and
the observed effects must be exactly the declared ones (tests/support/corpus_observe.py
says how each is measured), so a label that rests on a wrong belief about the database
fails.  The classifier's accuracy on the same corpus is checked in
tests/unit/test_classify_corpus_scores.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import classify_corpus
from corpus_observe import MariadbObserver, PostgresObserver

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
