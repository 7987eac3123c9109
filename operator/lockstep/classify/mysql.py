"""Classify MySQL/MariaDB and SQLite scripts with sqlglot.

The script is tokenized once with the dialect's tokenizer, which knows the dialect's
comments, quotes and identifiers; statements are the token runs between semicolons, so
each statement's first token gives its line and one statement that does not parse does
not hide the others.  Each statement is parsed from its tokens.

sqlglot reads some statements only as an opaque ``Command`` (``RENAME TABLE``, some
``ALTER TABLE`` forms).  ``RENAME TABLE`` is read from its tokens; other opaque
statements that can drop, rewrite or rename something are reported as ``parse-error``,
because nothing shows them to be safe.  MySQL's index options ``ALGORITHM``, ``LOCK``
and ``USING BTREE|HASH`` are taken out of ``CREATE INDEX`` before parsing, because
sqlglot does not read them there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from lockstep.classify import rules
from lockstep.classify.coltypes import ColumnType, compare, removed_members
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import UNPARSED_KIND, Classified, Column, Issue, PlanState

_PARSER: Final = "sqlglot"
_RISKY_VERBS: Final = frozenset({"ALTER", "DROP", "RENAME", "TRUNCATE", "DELETE", "UPDATE"})
_OBJECT_WORDS: Final = frozenset(
    {"TABLE", "INDEX", "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "DATABASE", "SCHEMA"}
    | {"EVENT", "USER", "SEQUENCE", "TYPE"}
)
_INDEX_OPTIONS: Final = frozenset({"ALGORITHM", "LOCK"})
_INDEX_METHODS: Final = frozenset({"BTREE", "HASH"})
_LOCKING_OPTIONS: Final = {("ALGORITHM", "COPY"), ("LOCK", "SHARED"), ("LOCK", "EXCLUSIVE")}
_TEXT_CAPACITY: Final = {
    "tinytext": 255,
    "text": 65_535,
    "mediumtext": 16_777_215,
    "longtext": 4_294_967_295,
}
_TYPE_NAMES: Final = {
    "bpchar": "char",
    "utinyint": "tinyint unsigned",
    "usmallint": "smallint unsigned",
    "umediumint": "mediumint unsigned",
    "uint": "int unsigned",
    "ubigint": "bigint unsigned",
    "udecimal": "decimal unsigned",
    "udouble": "double unsigned",
}
_VALUE_CONSTRAINTS: Final = (
    exp.DefaultColumnConstraint,
    exp.AutoIncrementColumnConstraint,
    exp.GeneratedAsIdentityColumnConstraint,
    exp.ComputedColumnConstraint,
)
_SIMPLE_KINDS: Final[Mapping[type[exp.Expr], str]] = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Select: "SELECT",
    exp.Union: "SELECT",
    exp.TruncateTable: "TRUNCATE",
    exp.Transaction: "BEGIN",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
    exp.Set: "SET",
    exp.Pragma: "PRAGMA",
}


@dataclass(frozen=True)
class _Statement:
    """One statement: the tokens the parser reads, and the index options taken out of them.

    ``words`` are the tokens too, except that the text the tokenizer keeps whole after a
    command keyword (``RENAME``, ``REPLACE`` ...) is tokenized as well.  ``start`` and
    ``end`` delimit the statement as written, options included.
    """

    tokens: list[Token]
    words: list[Token]
    start: int
    end: int
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return self.tokens[0].text.upper()


def read_script(sql: str, state: PlanState, dialect: Dialect) -> Iterator[Classified]:
    """Classify the script's statements in order, updating ``state`` as they go."""
    engine = SqlglotDialect.get_or_raise(dialect)
    try:
        tokens = engine.tokenize(sql)
    except SqlglotError as error:
        start = len(sql) - len(sql.lstrip())
        yield Classified(UNPARSED_KIND, start, len(sql), (rules.parse_error(_describe(error)),))
        return
    for statement in _statements(engine, tokens):
        yield _classify(engine, sql, statement, state, dialect)


def _classify(
    engine: SqlglotDialect, sql: str, statement: _Statement, state: PlanState, dialect: Dialect
) -> Classified:
    start, end = statement.start, statement.end
    try:
        parsed = engine.parser().parse(statement.tokens, sql)
    except SqlglotError as error:
        return Classified(UNPARSED_KIND, start, end, (rules.parse_error(_describe(error)),))
    expression = next((item for item in parsed if item is not None), None)
    if expression is None:
        return Classified(UNPARSED_KIND, start, end)
    kind = statement_kind(expression, statement)
    issues = _issues(expression, statement, state, dialect)
    return Classified(kind, start, end, tuple(issues))


def _describe(error: SqlglotError) -> str:
    if isinstance(error, ParseError) and error.errors:
        return str(error.errors[0].get("description", error))
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# --------------------------------------------------------------------------- splitting


def _statements(engine: SqlglotDialect, tokens: Sequence[Token]) -> Iterator[_Statement]:
    """The token runs between semicolons; empty statements (``;;``) are skipped."""
    current: list[Token] = []
    for token in tokens:
        if token.token_type != TokenType.SEMICOLON:
            current.append(token)
        elif current:
            yield _statement(engine, current)
            current = []
    if current:
        yield _statement(engine, current)


def _statement(engine: SqlglotDialect, tokens: list[Token]) -> _Statement:
    start, end = tokens[0].start, tokens[-1].end + 1
    if tokens[0].token_type == TokenType.CREATE and _has_index_word(tokens):
        kept, options = _without_index_options(tokens)
        return _Statement(kept, kept, start, end, options)
    return _Statement(tokens, _command_words(engine, tokens), start, end)


def _command_words(engine: SqlglotDialect, tokens: list[Token]) -> list[Token]:
    """The tokens, with the text after a command keyword tokenized too."""
    is_command = tokens[0].token_type in engine.tokenizer_class.COMMANDS
    if not is_command or len(tokens) != 2 or tokens[1].token_type != TokenType.STRING:
        return tokens
    try:
        return [tokens[0], *engine.tokenize(tokens[1].text)]
    except SqlglotError:
        return tokens


def _has_index_word(tokens: Sequence[Token]) -> bool:
    return any(token.token_type == TokenType.INDEX for token in tokens[:4])


def _without_index_options(tokens: list[Token]) -> tuple[list[Token], dict[str, str]]:
    """The tokens without ``USING BTREE|HASH`` and, after the column list, without
    ``ALGORITHM [=] x`` and ``LOCK [=] x``."""
    closing = [i for i, token in enumerate(tokens) if token.token_type == TokenType.R_PAREN]
    columns_end = closing[-1] if closing else len(tokens)
    kept: list[Token] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        option = _option_at(tokens, index, after_columns=index > columns_end)
        if option is None:
            kept.append(tokens[index])
            index += 1
            continue
        name, value, index = option
        options[name] = value
    return kept, options


def _option_at(
    tokens: Sequence[Token], index: int, *, after_columns: bool
) -> tuple[str, str, int] | None:
    """The index option starting at ``index``: (name, value, index after it)."""
    token, following = tokens[index], tokens[index + 1 : index + 3]
    if token.token_type == TokenType.USING and following:
        method = following[0].text.upper()
        return ("USING", method, index + 2) if method in _INDEX_METHODS else None
    quoted = token.token_type == TokenType.IDENTIFIER
    if quoted or not after_columns or token.text.upper() not in _INDEX_OPTIONS or not following:
        return None
    word = token.text.upper()
    if following[0].token_type == TokenType.EQ:
        if len(following) < 2:
            return None
        return word, following[1].text.upper(), index + 3
    return word, following[0].text.upper(), index + 2


# --------------------------------------------------------------------------- statement kinds


def statement_kind(expression: exp.Expr, statement: _Statement) -> str:
    """The statement's kind for the summary, e.g. ``ALTER TABLE`` or ``CREATE INDEX``."""
    if isinstance(expression, exp.Create | exp.Alter | exp.Drop):
        verb = type(expression).__name__.upper()
        kind = str(expression.args.get("kind") or "").upper()
        return f"{verb} {kind}".strip()
    if isinstance(expression, exp.Command):
        return _command_kind(statement.words)
    simple = _SIMPLE_KINDS.get(type(expression))
    return simple or type(expression).__name__.upper()


def _command_kind(tokens: Sequence[Token]) -> str:
    """``RENAME TABLE``, ``CREATE TRIGGER``, ``LOCK`` ...: the verb and its object word."""
    verb = tokens[0].text.upper()
    words = [token.text.upper() for token in tokens[1:6]]
    noun = next((word for word in words if word in _OBJECT_WORDS), "")
    return f"{verb} {noun}".strip()


# --------------------------------------------------------------------------- rules


def _issues(
    expression: exp.Expr, statement: _Statement, state: PlanState, dialect: Dialect
) -> list[Issue]:
    match expression:
        case exp.Create():
            return _create(expression, statement, state, dialect)
        case exp.Alter():
            return _alter(expression, state, dialect)
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
    expression: exp.Create, statement: _Statement, state: PlanState, dialect: Dialect
) -> list[Issue]:
    kind = str(expression.args.get("kind") or "").upper()
    if kind == "TABLE":
        _create_table(expression, state, dialect)
    elif kind == "INDEX":
        return _create_index(expression, statement.options, state, dialect)
    return []


def _create_table(expression: exp.Create, state: PlanState, dialect: Dialect) -> None:
    schema = expression.this
    table = schema.this if isinstance(schema, exp.Schema) else schema
    if not isinstance(table, exp.Table):
        return
    definitions = schema.expressions if isinstance(schema, exp.Schema) else []
    columns = {
        definition.name: _column(definition, dialect)
        for definition in definitions
        if isinstance(definition, exp.ColumnDef)
    }
    if_not_exists = bool(expression.args.get("exists"))
    state.create_table(_table_name(table), columns, if_not_exists=if_not_exists)


def _create_index(
    expression: exp.Create, options: Mapping[str, str], state: PlanState, dialect: Dialect
) -> list[Issue]:
    index = expression.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    name = _table_name(table)
    if not name or state.exempt(name):
        return []
    issues: list[Issue] = []
    locking = _locking_option(options)
    if locking:
        issues.append(rules.create_index_locks_writes(name, dialect, locking))
    if expression.args.get("unique"):
        issues.append(rules.add_unique_constraint(name, "a unique index"))
    return issues


def _locking_option(options: Mapping[str, str]) -> str:
    """``ALGORITHM=COPY`` or ``LOCK=SHARED|EXCLUSIVE`` when given: they block writes."""
    locking = [pair for pair in options.items() if pair in _LOCKING_OPTIONS]
    return ", ".join(f"{name}={value}" for name, value in locking)


def _alter(expression: exp.Alter, state: PlanState, dialect: Dialect) -> list[Issue]:
    table = _table_name(expression.this)
    if str(expression.args.get("kind") or "").upper() != "TABLE" or not table:
        return []
    exempt = state.exempt(table)
    options = _alter_options(expression)
    issues: list[Issue] = []
    for action in expression.args.get("actions") or []:
        issues.extend(_action(table, action, options, state, dialect))
        table = _renamed_to(action) or table
    return [] if exempt else issues


def _alter_options(expression: exp.Alter) -> dict[str, str]:
    options: dict[str, str] = {}
    for option in expression.args.get("options") or []:
        if isinstance(option, exp.AlgorithmProperty):
            options["ALGORITHM"] = option.name.upper()
        elif isinstance(option, exp.LockProperty):
            options["LOCK"] = option.name.upper()
    return options


def _renamed_to(action: exp.Expr) -> str:
    return _table_name(action.this) if isinstance(action, exp.AlterRename) else ""


def _action(
    table: str,
    action: exp.Expr,
    options: Mapping[str, str],
    state: PlanState,
    dialect: Dialect,
) -> list[Issue]:
    match action:
        case exp.ColumnDef():
            return _add_column(table, action, state, dialect)
        case exp.Drop():
            return _drop_columns(table, action, state)
        case exp.ModifyColumn():
            return _modify_column(table, action, state, dialect)
        case exp.RenameColumn():
            return _rename_column(table, action.this.name, action.args["to"].name, state)
        case exp.AlterRename():
            state.rename_table(table, _table_name(action.this))
            return [rules.rename_table(table, _table_name(action.this))]
        case exp.AddConstraint():
            return _add_constraints(table, action, options, dialect)
    return []


def _add_column(
    table: str, definition: exp.ColumnDef, state: PlanState, dialect: Dialect
) -> list[Issue]:
    column = _column(definition, dialect)
    state.set_column(table, definition.name, column)
    issues: list[Issue] = []
    if not column.nullable and not _has_value(definition):
        issues.append(rules.add_not_null_without_default(table, definition.name))
    if _constraint(definition, exp.PrimaryKeyColumnConstraint):
        issues.append(rules.add_unique_constraint(table, "a primary key"))
    elif _constraint(definition, exp.UniqueColumnConstraint):
        issues.append(rules.add_unique_constraint(table))
    return issues


def _drop_columns(table: str, action: exp.Drop, state: PlanState) -> list[Issue]:
    if str(action.args.get("kind") or "").upper() != "COLUMN":
        return []  # an index, key or constraint: no data is lost
    names = [column.name for column in action.args.get("tables") or []]
    for name in names:
        state.drop_column(table, name)
    return [rules.drop_column(table, name) for name in names]


def _modify_column(
    table: str, action: exp.ModifyColumn, state: PlanState, dialect: Dialect
) -> list[Issue]:
    """``MODIFY`` and ``CHANGE`` restate the whole column: name, type and nullability."""
    definition = action.this
    if not isinstance(definition, exp.ColumnDef):
        return []
    renamed_from = action.args.get("rename_from")
    old_name = renamed_from.name if renamed_from is not None else definition.name
    known = state.column(table, old_name)
    issues = []
    if old_name.lower() != definition.name.lower():
        issues.extend(_rename_column(table, old_name, definition.name, state))
    column = _column(definition, dialect)
    issues.extend(_type_change(table, definition.name, known, column.type))
    if known is not None and known.nullable and not column.nullable:
        issues.append(rules.set_not_null(table, definition.name, dialect))
    state.set_column(table, definition.name, column)
    return issues


def _type_change(table: str, name: str, known: Column | None, new: ColumnType) -> list[Issue]:
    old = known.type if known is not None else None
    removed = removed_members(old, new)
    if removed:
        return [rules.enum_value_removal(table, name, removed)]
    change = compare(old, new)
    if change == "same" or (change == "widening" and new.name in {"enum", "set"}):
        return []  # appending members changes no stored value
    return [rules.alter_column_type(table, name, old, new, change)]


def _rename_column(table: str, old: str, new: str, state: PlanState) -> list[Issue]:
    state.rename_column(table, old, new)
    return [rules.rename_column(table, old, new)]


def _add_constraints(
    table: str, action: exp.AddConstraint, options: Mapping[str, str], dialect: Dialect
) -> list[Issue]:
    issues: list[Issue] = []
    for item in action.expressions:
        parts = item.expressions if isinstance(item, exp.Constraint) else [item]
        for part in parts:
            issues.extend(_added_constraint(table, part, options, dialect))
    return issues


def _added_constraint(
    table: str, part: exp.Expr, options: Mapping[str, str], dialect: Dialect
) -> list[Issue]:
    match part:
        case exp.UniqueColumnConstraint():
            return [rules.add_unique_constraint(table)]
        case exp.PrimaryKey() | exp.PrimaryKeyColumnConstraint():
            return [rules.add_unique_constraint(table, "a primary key")]
        case exp.ForeignKey():
            return [rules.add_foreign_key_validates(table, dialect)]
        case exp.CheckColumnConstraint():
            return [rules.add_check_constraint(table, dialect)]
        case exp.IndexColumnConstraint():
            locking = _locking_option(options)
            return [rules.create_index_locks_writes(table, dialect, locking)] if locking else []
    return []


def _drop(expression: exp.Drop, state: PlanState) -> list[Issue]:
    kind = str(expression.args.get("kind") or "").upper()
    names = [_table_name(table) for table in expression.args.get("tables") or []]
    if kind == "TABLE":
        existing = state.existing(names)
        for name in names:
            state.drop_table(name)
        return [rules.drop_table(existing)] if existing else []
    if kind == "DATABASE":
        return [rules.drop_container("database", names)]
    if kind == "SCHEMA":
        return [rules.drop_container("schema", names)]
    return []


def _truncate(expression: exp.TruncateTable, state: PlanState) -> list[Issue]:
    existing = state.existing(_table_name(table) for table in expression.expressions)
    return [rules.truncate(existing)] if existing else []


def _without_where(expression: exp.Delete | exp.Update, state: PlanState) -> list[Issue]:
    if expression.args.get("where") is not None:
        return []
    table = _table_name(expression.this)
    if not table or state.exempt(table):
        return []
    if isinstance(expression, exp.Delete):
        return [rules.delete_without_where(table)]
    return [rules.update_without_where(table)]


def _command(statement: _Statement, state: PlanState) -> list[Issue]:
    """Statements sqlglot reads only as opaque commands: risky unless shown harmless."""
    kind = _command_kind(statement.words)
    if kind == "RENAME TABLE":
        return _rename_tables(statement.words[2:], state)
    if statement.verb in _RISKY_VERBS or kind == "CREATE INDEX":
        return [rules.opaque_statement(_PARSER)]
    return []


def _rename_tables(tokens: Sequence[Token], state: PlanState) -> list[Issue]:
    """``RENAME TABLE a TO b, c TO d``: each pair, read from the tokens."""
    issues: list[Issue] = []
    for old, new in _rename_pairs(tokens):
        if not state.exempt(old):
            issues.append(rules.rename_table(old, new))
        state.rename_table(old, new)
    return issues


def _rename_pairs(tokens: Sequence[Token]) -> list[tuple[str, str]]:
    """(old, new) names: comma-separated ``old TO new`` groups, names possibly dotted."""
    groups: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.COMMA:
            groups.append([])
        else:
            groups[-1].append(token)
    return [pair for group in groups if (pair := _rename_pair(group)) is not None]


def _rename_pair(group: Sequence[Token]) -> tuple[str, str] | None:
    keyword = [i for i, token in enumerate(group) if _is_keyword(token, "TO")]
    if len(keyword) != 1:
        return None
    old = "".join(token.text for token in group[: keyword[0]])
    new = "".join(token.text for token in group[keyword[0] + 1 :])
    return (old, new) if old and new else None


def _is_keyword(token: Token, word: str) -> bool:
    return token.token_type != TokenType.IDENTIFIER and token.text.upper() == word


# --------------------------------------------------------------------------- AST helpers


def _table_name(table: exp.Expr | None) -> str:
    if not isinstance(table, exp.Table):
        return ""
    parts = (table.catalog, table.db, table.name)
    return ".".join(part for part in parts if part)


def _constraint(definition: exp.ColumnDef, kind: type[exp.Expr]) -> exp.Expr | None:
    for constraint in definition.constraints:
        if isinstance(constraint.kind, kind):
            return constraint.kind
    return None


def _column(definition: exp.ColumnDef, dialect: Dialect) -> Column:
    not_null = _constraint(definition, exp.NotNullColumnConstraint)
    explicit_not_null = not_null is not None and not not_null.args.get("allow_null")
    primary_key = _constraint(definition, exp.PrimaryKeyColumnConstraint) is not None
    kind = definition.args.get("kind")
    column_type = _column_type(kind, dialect) if isinstance(kind, exp.DataType) else None
    return Column(column_type or ColumnType("unknown"), not (explicit_not_null or primary_key))


def _has_value(definition: exp.ColumnDef) -> bool:
    """True when existing rows get a value: a DEFAULT, AUTO_INCREMENT or generated column."""
    return any(_constraint(definition, kind) is not None for kind in _VALUE_CONSTRAINTS)


def _column_type(data_type: exp.DataType, dialect: Dialect) -> ColumnType:
    base = str(data_type.this.value).lower()
    members = [item for item in data_type.expressions if isinstance(item, exp.Literal)]
    if base in {"enum", "set"}:
        return ColumnType(base, values=tuple(member.name for member in members))
    if base in _TEXT_CAPACITY:
        return _text_type(base, dialect)
    return ColumnType(_TYPE_NAMES.get(base, base), _type_params(data_type))


def _text_type(base: str, dialect: Dialect) -> ColumnType:
    """MySQL's TEXT types have a size; SQLite's TEXT has none."""
    if dialect == "sqlite":
        return ColumnType("text")
    return ColumnType("text", (_TEXT_CAPACITY[base],))


def _type_params(data_type: exp.DataType) -> tuple[int, ...]:
    params: list[int] = []
    for item in data_type.expressions:
        value = item.this if isinstance(item, exp.DataTypeParam) else item
        if isinstance(value, exp.Literal) and value.is_int:
            params.append(int(value.name))
    return tuple(params)
