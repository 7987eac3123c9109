"""The cached CEL parser (issue 21) is cel-python's own parser, only loaded instead of built."""

from __future__ import annotations

from pathlib import Path

import lark
import pytest
from celpy import celparser

from lockstep.local import cel_parser_cache, cel_rules, validation


def celpy_own_parser() -> lark.Lark:
    """The parser cel-python builds by itself, without touching the one in use."""
    kept = celparser.CELParser.CEL_PARSER
    celparser.CELParser.CEL_PARSER = None
    try:
        celparser.CELParser()
        built = celparser.CELParser.CEL_PARSER
        assert built is not None
        return built
    finally:
        celparser.CELParser.CEL_PARSER = kept


def test_the_cached_parser_has_cel_pythons_options_and_parses_every_crd_rule_alike() -> None:
    ours = celparser.CELParser.CEL_PARSER  # installed when cel_rules was imported
    assert ours is not None
    theirs = celpy_own_parser()
    mine = {k: v for k, v in ours.options.options.items() if k != "cache"}
    own = {k: v for k, v in theirs.options.options.items() if k != "cache"}
    assert mine == own
    rules = list(cel_rules.iter_rules(validation.migration_schema()))
    assert len(rules) > 5
    for rule in rules:
        assert ours.parse(rule.rule) == theirs.parse(rule.rule), rule.rule


def test_the_cache_lives_in_a_directory_only_this_user_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cel_parser_cache.cache_file() == tmp_path / "lockstep" / "cel-python-parser.lark"
    # Others may write there: a pickle from it is not loaded.
    (tmp_path / "lockstep").chmod(0o777)
    assert cel_parser_cache.cache_file() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-directory")
    assert cel_parser_cache.cache_file() is None
