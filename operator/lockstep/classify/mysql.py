"""Classify MySQL/MariaDB and SQLite scripts with sqlglot: the rules per statement.

:mod:`lockstep.classify.mysql_statements` splits the script into statements;
each statement is parsed from its tokens and its findings come from here
(``CREATE``, ``DROP``, ``TRUNCATE``, ``DELETE``/``UPDATE`` without ``WHERE``,
``RENAME TABLE``) or, for ``ALTER TABLE``, from
:mod:`lockstep.classify.mysql_alter`.

sqlglot reads some statements only as an opaque ``Command`` (``RENAME TABLE``, some
``ALTER TABLE`` forms).  ``RENAME TABLE`` is read from its tokens; other opaque
statements that can drop, rewrite or rename something are reported as ``parse-error``,
because nothing shows them to be safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokenizer_core import Token

from lockstep.classify import mysql_alter, mysql_columns, mysql_statements, rules, rules_locks
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import UNPARSED_KIND, Classified, Issue, PlanState

_PARSER: Final = "sqlglot"
_SQLGLOT_LOG: Final = logging.getLogger("sqlglot")
log = logging.getLogger(__name__)
_RISKY_VERBS: Final = frozenset({"ALTER", "DROP", "RENAME", "TRUNCATE", "DELETE", "UPDATE"})
_PROCEDURAL_VERBS: Final = frozenset({"PREPARE", "EXECUTE", "CALL", "DO", "HANDLER"})
_ROUTINES: Final = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT"})
_DROPPED_OBJECTS: Final = frozenset(
    {"VIEW", "PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "SEQUENCE"}
)


class _QuietSqlglot(logging.Filter):
    """Holds back sqlglot's "falling back to parsing as a Command" warning, one per opaque
    statement: a 5,000-statement file would put thousands of lines in the pod's log, and
    each such statement is a finding anyway.  One summary line is logged instead."""

    def __init__(self) -> None:
        super().__init__()
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.WARNING:
            self.held += 1
            return False
        return True


def read_script(sql: str, state: PlanState, dialect: Dialect) -> Iterator[Classified]:
    """Classify the script's statements in order, updating ``state`` as they go."""
    quiet = _QuietSqlglot()
    _SQLGLOT_LOG.addFilter(quiet)
    try:
        yield from _read_script(sql, state, dialect)
    finally:
        _SQLGLOT_LOG.removeFilter(quiet)
        if quiet.held:
            log.info("sqlglot read %d statement(s) only as opaque commands", quiet.held)


def _read_script(sql: str, state: PlanState, dialect: Dialect) -> Iterator[Classified]:
    engine = SqlglotDialect.get_or_raise(dialect)
    try:
        tokens = engine.tokenize(sql)
    except SqlglotError as error:
        start = len(sql) - len(sql.lstrip())
        yield Classified(UNPARSED_KIND, start, len(sql), (rules.parse_error(_describe(error)),))
        return
    for statement in mysql_statements.split(engine, tokens):
        yield _classify(engine, sql, statement, state, dialect)


def _classify(
    engine: SqlglotDialect,
    sql: str,
    statement: mysql_statements.Statement,
    state: PlanState,
    dialect: Dialect,
) -> Classified:
    start, end = statement.start, statement.end
    try:
        parsed = engine.parser().parse(statement.tokens, sql)
    except SqlglotError as error:
        return Classified(UNPARSED_KIND, start, end, (rules.parse_error(_describe(error)),))
    expression = next((item for item in parsed if item is not None), None)
    if expression is None:
        return Classified(UNPARSED_KIND, start, end)
    kind = mysql_statements.statement_kind(expression, statement)
    issues = _issues(expression, statement, state, dialect)
    return Classified(kind, start, end, tuple(issues))


def _describe(error: SqlglotError) -> str:
    if isinstance(error, ParseError) and error.errors:
        return str(error.errors[0].get("description", error))
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _issues(
    expression: exp.Expr, statement: mysql_statements.Statement, state: PlanState, dialect: Dialect
) -> list[Issue]:
    match expression:
        case exp.Create():
            return _create(expression, statement, state, dialect)
        case exp.Alter():
            return mysql_alter.alter_table(expression, state, dialect)
        case exp.Drop():
            return _drop(expression, state)
        case exp.TruncateTable():
            return _truncate(expression, state)
        case exp.Delete() | exp.Update():
            return _without_where(expression, state)
        case exp.Command():
            return _command(statement, state)
    return []


def _create(
    expression: exp.Create,
    statement: mysql_statements.Statement,
    state: PlanState,
    dialect: Dialect,
) -> list[Issue]:
    kind = str(expression.args.get("kind") or "").upper()
    if kind == "TABLE":
        _create_table(expression, state, dialect)
    elif kind == "INDEX":
        return _create_index(expression, statement.options, state, dialect)
    elif kind in _ROUTINES:
        return [rules.procedural(f"CREATE {kind}")]
    elif kind == "VIEW" and isinstance(expression.this, exp.Table):
        state.create_object(mysql_columns.table_name(expression.this))
    return []


def _create_table(expression: exp.Create, state: PlanState, dialect: Dialect) -> None:
    schema = expression.this
    table = schema.this if isinstance(schema, exp.Schema) else schema
    if not isinstance(table, exp.Table):
        return
    definitions = schema.expressions if isinstance(schema, exp.Schema) else []
    columns = {
        definition.name: mysql_columns.column(definition, dialect)
        for definition in definitions
        if isinstance(definition, exp.ColumnDef)
    }
    if_not_exists = bool(expression.args.get("exists"))
    state.create_table(mysql_columns.table_name(table), columns, if_not_exists=if_not_exists)


def _create_index(
    expression: exp.Create, options: Mapping[str, str], state: PlanState, dialect: Dialect
) -> list[Issue]:
    index = expression.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    name = mysql_columns.table_name(table)
    if not name or state.exempt(name):
        return []
    issues: list[Issue] = []
    locking = mysql_statements.locking_option(options)
    if locking:
        issues.append(rules.create_index_locks_writes(name, dialect, locking))
    if expression.args.get("unique"):
        params = index.args.get("params") if isinstance(index, exp.Index) else None
        keys = params.args.get("columns") or [] if params is not None else []
        columns = mysql_columns.plain_columns(keys)
        issues.append(rules.add_unique_constraint(name, "a unique index", columns))
    return issues


def _drop(expression: exp.Drop, state: PlanState) -> list[Issue]:
    kind = str(expression.args.get("kind") or "").upper()
    names = [mysql_columns.table_name(table) for table in expression.args.get("tables") or []]
    if kind == "TABLE":
        existing = state.existing(names)
        for name in names:
            state.drop_table(name)
        return [rules.drop_table(existing)] if existing else []
    if kind == "DATABASE":
        return [rules.drop_container("database", names)]
    if kind == "SCHEMA":
        return [rules.drop_container("schema", names)]
    old = [name for name in names if not state.is_new_object(name)]
    if kind in _DROPPED_OBJECTS and (old or not names):
        return [rules.drop_object(kind.lower(), old or [str(expression.this or "")])]
    return []


def _truncate(expression: exp.TruncateTable, state: PlanState) -> list[Issue]:
    existing = state.existing(mysql_columns.table_name(table) for table in expression.expressions)
    return [rules.truncate(existing)] if existing else []


def _without_where(expression: exp.Delete | exp.Update, state: PlanState) -> list[Issue]:
    if expression.args.get("where") is not None:
        return []
    table = mysql_columns.table_name(expression.this)
    if not table or state.exempt(table):
        return []
    if isinstance(expression, exp.Delete):
        return [rules.delete_without_where(table)]
    return [rules.update_without_where(table)]


def _command(statement: mysql_statements.Statement, state: PlanState) -> list[Issue]:
    """Statements sqlglot reads only as opaque commands: risky unless shown harmless."""
    kind = mysql_statements.command_kind(statement.words)
    words = {token.text.upper() for token in statement.words[:8]}
    table = statement.words[2].text if len(statement.words) > 2 else ""
    if kind == "RENAME TABLE":
        return _rename_tables(statement.words[2:], state)
    if statement.verb in _PROCEDURAL_VERBS:
        return [rules.procedural(statement.verb)]
    if kind.startswith("CREATE") and words & _ROUTINES:
        return [rules.procedural(kind)]
    if kind == "CREATE INDEX" and words & {"FULLTEXT", "SPATIAL"}:
        return [rules_locks.alter_locks_writes(table, "a FULLTEXT/SPATIAL index (LOCK=SHARED)")]
    if kind == "ALTER TABLE" and "CONVERT" in words and not state.exempt(table):
        why = "CONVERT TO CHARACTER SET re-encodes every row"
        return [rules_locks.alter_copies_table(table, why)]
    if statement.verb in _RISKY_VERBS or kind == "CREATE INDEX":
        return [rules.opaque_statement(_PARSER)]
    return []


def _rename_tables(tokens: Sequence[Token], state: PlanState) -> list[Issue]:
    """``RENAME TABLE a TO b, c TO d``: each pair, read from the tokens."""
    issues: list[Issue] = []
    for old, new in mysql_statements.rename_pairs(tokens):
        if not state.exempt(old):
            issues.append(rules.rename_table(old, new))
        state.rename_table(old, new)
    return issues
