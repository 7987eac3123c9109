"""The fast pglast tree (classify.postgres_fastast) equals pglast's own, node for node.

The classifier reads PostgreSQL through it; any difference would change a verdict, so every
statement of the labelled corpus and of the classifier's unit tests is parsed both ways.
"""

from __future__ import annotations

import pytest
from pglast import parser

import classify_corpus
from lockstep.classify import postgres_fastast

CORPUS = classify_corpus.load("postgresql")
SCRIPTS = [CORPUS.setup] + [sql for case in CORPUS.cases for sql in case.files]
EDGES = [
    "SELECT NULL, 0, 0.0, false, B'0', '', -1",
    "CREATE TABLE p (a int) PARTITION BY LIST (a); DROP INDEX a, b.c",
    "SELECT * FROM generate_series(1, 2) WITH ORDINALITY AS t(n, i)",
    "",
]


@pytest.mark.parametrize("sql", SCRIPTS + EDGES)
def test_the_fast_tree_is_pglasts_tree(sql: str) -> None:
    assert postgres_fastast.parse(sql) == list(parser.parse_sql(sql))


def test_a_syntax_error_raises_pglasts_parse_error() -> None:
    with pytest.raises(parser.ParseError):
        postgres_fastast.parse("ALTER TABLE")
