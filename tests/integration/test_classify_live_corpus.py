"""The live-schema corpus (tests/data/classify_corpus/live.yaml) on real databases.

Each case's effects are observed as for the static corpus (tests/support/corpus_observe.py),
and its label is checked against Lockstep's verdict with the facts read from a database
holding the same setup: the sizes, CHECK constraints and duplicates the plan Job would see.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from classify_corpus import Corpus, LiveCase, label_problems, load_live
from corpus_observe import MariadbObserver, PostgresObserver
from lockstep import classify, database
from lockstep.classify import live
from lockstep.pod import live_facts, live_schema

pytestmark = pytest.mark.integration

CASES = load_live()


def _corpus(engine: str) -> Corpus:
    setup = next(case.setup for case in CASES if case.engine == engine)
    return Corpus(engine, setup, tuple(case.case for case in CASES if case.engine == engine))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def postgres(postgres_admin_url: str) -> Iterator[PostgresObserver]:
    observer = PostgresObserver(postgres_admin_url, _corpus("postgresql"))
    yield observer
    observer.close()


@pytest.fixture(scope="module")
def mariadb(mariadb_admin_url: str) -> Iterator[str]:
    """A MariaDB database holding the setup, for reading the facts (cases run elsewhere)."""
    observer = MariadbObserver(mariadb_admin_url, _corpus("mysql"))
    name = f"live_{uuid.uuid4().hex[:10]}"
    with observer._connect() as admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    with observer._connect(name) as connection, connection.cursor() as cursor:
        cursor.execute(observer.setup)
        while cursor.nextset():
            pass
    yield make_url(mariadb_admin_url).set(database=name).render_as_string(hide_password=False)
    with observer._connect() as admin, admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _verdict(url: str, live_case: LiveCase) -> bool:
    case = live_case.case
    files = [classify.SqlFile(n, s) for n, s in zip(case.file_names(), case.files, strict=True)]
    first = classify.classify(files, live_case.engine)
    limits = live.Thresholds(rows=live_case.small_table_rows)
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            columns = live_schema.read(connection, live_case.engine)
            facts = live_facts.read(connection, live_case.engine, first.questions, columns, limits)
    finally:
        engine.dispose()
    return classify.classify(files, live_case.engine, schema=columns, facts=facts).destructive


def test_labels_agree_with_effects() -> None:
    assert label_problems([c.case for c in CASES if c.engine == "postgresql"], "postgresql") == []
    assert label_problems([c.case for c in CASES if c.engine == "mysql"], "mysql") == []


def test_the_static_classifier_cannot_tell_them_apart() -> None:
    """Without the database, every pair (small/large, with/without CHECK) gets one verdict:
    the live schema is what makes these cases right."""
    static = {
        c.case.id: classify.classify(
            [
                classify.SqlFile(n, s)
                for n, s in zip(c.case.file_names(), c.case.files, strict=True)
            ],
            c.engine,
        ).destructive
        for c in CASES
    }
    wrong = [c.case.id for c in CASES if static[c.case.id] != (c.case.label == "dangerous")]
    assert len(wrong) >= 4, wrong


@pytest.mark.parametrize(
    "live_case", [c for c in CASES if c.engine == "postgresql"], ids=lambda c: c.case.id
)
def test_postgresql_live_case(postgres: PostgresObserver, live_case: LiveCase) -> None:
    case = live_case.case
    assert sorted(postgres.observe(case)) == sorted(case.effects), f"{case.id}: {case.why}"
    template = make_url(postgres.admin_url).set(database=postgres.template)
    url = template.render_as_string(hide_password=False)
    assert _verdict(url, live_case) == (case.label == "dangerous"), case.why


@pytest.mark.parametrize(
    "live_case", [c for c in CASES if c.engine == "mysql"], ids=lambda c: c.case.id
)
def test_mariadb_live_case(mariadb_admin_url: str, mariadb: str, live_case: LiveCase) -> None:
    case = live_case.case
    observer = MariadbObserver(mariadb_admin_url, _corpus("mysql"))
    assert sorted(observer.observe(case)) == sorted(case.effects), f"{case.id}: {case.why}"
    assert _verdict(mariadb, live_case) == (case.label == "dangerous"), case.why
