"""cel-python's parser, built once per machine instead of once per `lockstep apply`.

cel-python builds its Lark LALR parser from the CEL grammar when it first compiles an
expression: about 0.4 s of every `lockstep apply` (issue 21), the largest single part of its
start-up. Lark can keep a built parser in a file and load it in a few tens of milliseconds; it
checks the grammar's and options' hash (and its own version) before it trusts the file, and
builds afresh on any difference. This module builds the parser as cel-python does, with such a
file, and hands it to cel-python before cel-python builds its own.

The file lives in the user's own cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``, under
``lockstep/``), never in the shared temporary directory Lark would choose: Lark's cache is a
pickle, and a file another user could plant there would run their code. Where that directory
cannot be made, cel-python builds its parser as before.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import lark
from celpy import celparser


def cache_file() -> Path | None:
    """Where the parser is kept, in a directory only this user can write; None if none."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lockstep"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        if base.stat().st_uid != os.getuid() or base.stat().st_mode & 0o022:
            return None  # someone else's, or writable by others: do not load from it
    except OSError:
        return None
    return base / "cel-python-parser.lark"


def install() -> None:
    """Give cel-python its parser, from the cache file (built into it the first time)."""
    if celparser.CELParser.CEL_PARSER is not None:
        return
    where = cache_file()
    if where is None:
        return
    grammar = (Path(celparser.__file__).parent / "cel.lark").read_text()
    # The options cel-python's CELParser passes (tests/unit/test_local_validation.py compares).
    celparser.CELParser.CEL_PARSER = lark.Lark(
        grammar,
        parser="lalr",
        start="expr",
        debug=True,
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": celparser.CELParser.ambiguous_literals},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
        tree_class=lark.Tree,
        cache=str(where),
    )
