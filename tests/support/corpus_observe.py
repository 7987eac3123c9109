"""Observe what a corpus case does to a real, populated PostgreSQL or MariaDB database.

PostgreSQL: each case runs in a database cloned from a template holding the corpus's
populated setup.  Before and after the case a snapshot records every user relation's
relfilenode (a new one means the table or index was rewritten), row counts and the names
of schemas, relations, columns, types, enum labels and functions.  Inside each file's
transaction, after every statement, the session reads its own locks (``pg_locks``) and the
sequential scans it made in this transaction (``pg_stat_xact_user_tables``): a scan of a
pre-existing table while holding a lock on it that blocks writes (SHARE or stronger) is
``scan_under_lock``.  Files marked ``autocommit`` run statement by statement, so locks and
scans are not observable for them; rewrites, lost names and rows still are.  A rewrite
reads the whole table and rebuilds its indexes, so ``rewrite`` stands for those too.

MariaDB: DDL commits on its own and ``ALGORITHM``/``LOCK`` clauses make the server say in
advance what an ALTER needs: each ``ALTER TABLE`` / ``CREATE INDEX`` without its own clauses
is tried with ``ALGORITHM=INSTANT``, then ``NOCOPY``, then ``INPLACE`` (each with
``LOCK=NONE`` first), and refused attempts change nothing; the first one accepted runs.
A statement that gives its own ``ALGORITHM=COPY`` or ``LOCK=SHARED|EXCLUSIVE`` is taken at
its word.  Names (tables, views, columns, routines) and row counts are compared as above.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import psycopg
import pymysql
from pglast.parser import split as pg_split
from sqlalchemy.engine import make_url

from classify_corpus import Case, Corpus

MyConnection: TypeAlias = "pymysql.connections.Connection[Any]"

_WRITE_BLOCKING: Final = frozenset(
    {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
)
_USER_NAMESPACES: Final = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
_NAMES_SQL: Final = f"""
SELECT 'schema:' || nspname FROM pg_namespace n WHERE {_USER_NAMESPACES}
UNION ALL
SELECT 'rel:' || n.nspname || '.' || c.relname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE {_USER_NAMESPACES} AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'i', 'f')
UNION ALL
SELECT 'col:' || n.nspname || '.' || c.relname || '.' || a.attname FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE {_USER_NAMESPACES} AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0
    AND NOT a.attisdropped
UNION ALL
SELECT 'type:' || n.nspname || '.' || t.typname FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE {_USER_NAMESPACES} AND t.typtype IN ('e', 'd')
UNION ALL
SELECT 'enum:' || t.typname || '.' || e.enumlabel FROM pg_enum e
  JOIN pg_type t ON t.oid = e.enumtypid
UNION ALL
SELECT 'fn:' || n.nspname || '.' || p.proname FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NAMESPACES}
"""
_RELATIONS_SQL: Final = f"""
SELECT c.oid, c.relkind, c.relfilenode, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_NAMESPACES} AND c.relkind IN ('r', 'm', 'p', 'i')
"""


@dataclass(frozen=True)
class _Snapshot:
    names: frozenset[str]
    relfilenodes: dict[int, tuple[str, int]]  # oid -> (relkind, relfilenode)
    rows: dict[int, int]  # oid of a table or matview -> rows


def _pg_snapshot(connection: psycopg.Connection[Any]) -> _Snapshot:
    names = frozenset(row[0] for row in connection.execute(_NAMES_SQL))
    relations = connection.execute(_RELATIONS_SQL).fetchall()
    rows = {
        oid: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        for oid, kind, _node, name in relations
        if kind in ("r", "m")  # a partitioned parent's rows are its partitions' rows
    }
    return _Snapshot(names, {oid: (kind, node) for oid, kind, node, _ in relations}, rows)


class PostgresObserver:
    """Runs cases on clones of a template database holding the corpus's setup."""

    def __init__(self, admin_url: str, corpus: Corpus) -> None:
        self.admin_url = admin_url
        self.template = f"corpus_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.template}"')
        with psycopg.connect(self._url(self.template), autocommit=True) as connection:
            connection.execute(corpus.setup)

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def _url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def observe(self, case: Case) -> set[str]:
        name = f"case_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        try:
            return self._observe_in(self._url(name), case)
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _observe_in(self, url: str, case: Case) -> set[str]:
        with psycopg.connect(url, autocommit=True) as connection:
            before = _pg_snapshot(connection)
        populated = {oid for oid, count in before.rows.items() if count > 0}
        effects: set[str] = set()
        with psycopg.connect(url, autocommit=True) as connection:
            for sql in case.files:
                statements = [str(part) for part in pg_split(sql, with_parser=False)]
                ok = (
                    _run_autocommit(connection, statements)
                    if case.autocommit
                    else _run_in_transaction(connection, statements, populated, effects)
                )
                if not ok:
                    effects.add("fails")
                    break
        with psycopg.connect(url, autocommit=True) as connection:  # a fresh session
            after = _pg_snapshot(connection)
        effects |= _compared(before, after, populated)
        if "rewrite" in effects:  # a rewrite reads the whole table and rebuilds its indexes
            effects -= {"scan_under_lock", "index_rebuilt"}
        return effects


def _run_autocommit(connection: psycopg.Connection[Any], statements: Sequence[str]) -> bool:
    try:
        for statement in statements:
            connection.execute(statement)
    except psycopg.Error:
        return False
    return True


def _run_in_transaction(
    connection: psycopg.Connection[Any],
    statements: Sequence[str],
    populated: set[int],
    effects: set[str],
) -> bool:
    try:
        with connection.transaction():
            for statement in statements:
                scans = _scans(connection)
                connection.execute(statement)
                scanned = {
                    oid for oid, count in _scans(connection).items() if count > scans.get(oid, 0)
                }
                locks = connection.execute(
                    "SELECT relation::oid, mode FROM pg_locks WHERE pid = pg_backend_pid() "
                    "AND locktype = 'relation' AND granted"
                ).fetchall()
                blocking = {oid for oid, mode in locks if mode in _WRITE_BLOCKING}
                if scanned & blocking & populated:
                    effects.add("scan_under_lock")
                exclusive = {oid for oid, mode in locks if mode == "AccessExclusiveLock"}
                if exclusive & populated:
                    effects.add("access_exclusive")
    except psycopg.Error:
        return False
    return True


def _scans(connection: psycopg.Connection[Any]) -> dict[int, int]:
    rows = connection.execute("SELECT relid, seq_scan FROM pg_stat_xact_user_tables").fetchall()
    return dict(rows)


def _compared(before: _Snapshot, after: _Snapshot, populated: set[int]) -> set[str]:
    effects: set[str] = set()
    for oid, (kind, node) in before.relfilenodes.items():
        now = after.relfilenodes.get(oid)
        if now is None or now[1] == node or kind == "p":
            continue
        if kind == "i":
            effects.add("index_rebuilt")
        elif oid in populated:
            effects.add("rewrite")
    if before.names - after.names:
        effects.add("names_lost")
    if any(after.rows.get(oid, 0) < before.rows[oid] for oid in populated):
        effects.add("rows_lost")
    return effects


# ------------------------------------------------------------------------------ MariaDB
_REFUSED: Final = (1845, 1846)  # ALGORITHM / LOCK not supported for this operation
_PROBED: Final = re.compile(r"^\s*(ALTER\s+TABLE|CREATE\s+(UNIQUE\s+|FULLTEXT\s+)?INDEX)\b", re.I)
_OWN_CLAUSE: Final = re.compile(r"\b(ALGORITHM|LOCK)\s*=", re.I)
_OWN_COPY: Final = re.compile(r"\bALGORITHM\s*=\s*COPY\b", re.I)
_OWN_LOCK: Final = re.compile(r"\bLOCK\s*=\s*(SHARED|EXCLUSIVE)\b", re.I)
_ATTEMPTS: Final = (
    ("INSTANT", None),
    ("NOCOPY", "NONE"),
    ("NOCOPY", None),
    ("INPLACE", "NONE"),
    ("INPLACE", None),
)


class MariadbObserver:
    """Runs cases on fresh MariaDB databases, each set up from the corpus's setup."""

    def __init__(self, admin_url: str, corpus: Corpus) -> None:
        self.url = make_url(admin_url)
        self.setup = corpus.setup

    @contextmanager
    def _connect(self, database: str | None = None) -> Iterator[MyConnection]:
        connection = pymysql.connect(
            host=self.url.host,
            port=self.url.port or 3306,
            user=self.url.username,
            password=self.url.password or "",
            database=database,
            autocommit=True,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
        )
        try:
            yield connection
        finally:
            connection.close()

    def observe(self, case: Case) -> set[str]:
        name = f"case_{uuid.uuid4().hex[:10]}"
        with self._connect() as admin, admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        try:
            with self._connect(name) as connection:
                with connection.cursor() as cursor:
                    cursor.execute(self.setup)
                    while cursor.nextset():
                        pass
                before = _my_snapshot(connection)
                effects = _run_mysql(connection, case)
                after = _my_snapshot(connection)
        finally:
            with self._connect() as admin, admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        if before[0] - after[0]:
            effects.add("names_lost")
        if any(after[1].get(table, 0) < count for table, count in before[1].items()):
            effects.add("rows_lost")
        return effects


def _run_mysql(connection: MyConnection, case: Case) -> set[str]:
    from sqlglot.dialects.dialect import Dialect

    from lockstep.classify import mysql_statements  # the classifier's own splitter

    engine = Dialect.get_or_raise("mysql")
    effects: set[str] = set()
    for sql in case.files:
        for statement in mysql_statements.split(engine, engine.tokenize(sql)):
            text = sql[statement.start : statement.end]
            try:
                effects |= _run_statement(connection, text)
            except pymysql.MySQLError:
                effects.add("fails")
                return effects
    return effects


def _run_statement(connection: MyConnection, text: str) -> set[str]:
    with connection.cursor() as cursor:
        if not _PROBED.match(text) or _OWN_CLAUSE.search(text):
            cursor.execute(text)
            own = {"copy"} if _OWN_COPY.search(text) else set()
            return own | ({"locks_writes"} if _OWN_LOCK.search(text) else set())
        separator = " " if re.match(r"^\s*CREATE", text, re.I) else ", "
        for algorithm, lock in _ATTEMPTS:
            clause = f"{separator}ALGORITHM={algorithm}" + (f", LOCK={lock}" if lock else "")
            if separator == " " and lock:
                clause = f" ALGORITHM={algorithm} LOCK={lock}"
            try:
                cursor.execute(text + clause)
            except pymysql.MySQLError as error:
                if error.args and error.args[0] in _REFUSED:
                    continue
                raise
            effects = {"rebuild"} if algorithm == "INPLACE" else set()
            return effects | (
                {"locks_writes"} if lock is None and algorithm != "INSTANT" else set()
            )
        cursor.execute(text)
        return {"copy"}


def _my_snapshot(
    connection: MyConnection,
) -> tuple[set[str], dict[str, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CONCAT('rel:', table_name) FROM information_schema.tables "
            "WHERE table_schema = DATABASE() "
            "UNION ALL SELECT CONCAT('col:', table_name, '.', column_name) "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "UNION ALL SELECT CONCAT('fn:', routine_name) "
            "FROM information_schema.routines WHERE routine_schema = DATABASE()"
        )
        names = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
        )
        rows = {}
        for (table,) in cursor.fetchall():
            cursor.execute(f"SELECT count(*) FROM `{table}`")
            rows[table] = cursor.fetchone()[0]
    return names, rows
