"""Split a MySQL/MariaDB or SQLite script into statements with sqlglot's tokenizer.

The script is tokenized once with the dialect's tokenizer, which knows the dialect's
comments, quotes and identifiers; statements are the token runs between semicolons, so
each statement's first token gives its line and one statement that does not parse does
not hide the others.  MySQL's index options ``ALGORITHM``, ``LOCK`` and ``USING
BTREE|HASH`` are taken out of ``CREATE INDEX`` before parsing, because sqlglot does not
read them there.  Also here: each statement's kind for the summary, and the token-level
reading of what sqlglot leaves opaque (``RENAME TABLE a TO b``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

_OBJECT_WORDS: Final = frozenset(
    {"TABLE", "INDEX", "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "DATABASE", "SCHEMA"}
    | {"EVENT", "USER", "SEQUENCE", "TYPE"}
)
_INDEX_OPTIONS: Final = frozenset({"ALGORITHM", "LOCK"})
_INDEX_METHODS: Final = frozenset({"BTREE", "HASH"})
_LOCKING_OPTIONS: Final = {("ALGORITHM", "COPY"), ("LOCK", "SHARED"), ("LOCK", "EXCLUSIVE")}
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
class Statement:
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


def split(engine: SqlglotDialect, tokens: Sequence[Token]) -> Iterator[Statement]:
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


def _statement(engine: SqlglotDialect, tokens: list[Token]) -> Statement:
    start, end = tokens[0].start, tokens[-1].end + 1
    if tokens[0].token_type == TokenType.CREATE and _has_index_word(tokens):
        kept, options = _without_index_options(tokens)
        return Statement(kept, kept, start, end, options)
    return Statement(tokens, _command_words(engine, tokens), start, end)


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


def locking_option(options: Mapping[str, str]) -> str:
    """``ALGORITHM=COPY`` or ``LOCK=SHARED|EXCLUSIVE`` when given: they block writes."""
    locking = [pair for pair in options.items() if pair in _LOCKING_OPTIONS]
    return ", ".join(f"{name}={value}" for name, value in locking)


def statement_kind(expression: exp.Expr, statement: Statement) -> str:
    """The statement's kind for the summary, e.g. ``ALTER TABLE`` or ``CREATE INDEX``."""
    if isinstance(expression, exp.Create | exp.Alter | exp.Drop):
        verb = type(expression).__name__.upper()
        kind = str(expression.args.get("kind") or "").upper()
        return f"{verb} {kind}".strip()
    if isinstance(expression, exp.Command):
        return command_kind(statement.words)
    simple = _SIMPLE_KINDS.get(type(expression))
    return simple or type(expression).__name__.upper()


def command_kind(tokens: Sequence[Token]) -> str:
    """``RENAME TABLE``, ``CREATE TRIGGER``, ``LOCK`` ...: the verb and its object word."""
    verb = tokens[0].text.upper()
    words = [token.text.upper() for token in tokens[1:6]]
    noun = next((word for word in words if word in _OBJECT_WORDS), "")
    return f"{verb} {noun}".strip()


def rename_pairs(tokens: Sequence[Token]) -> list[tuple[str, str]]:
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
