"""The test tree itself: pytest imports test modules by basename (rootdir-relative imports are
off), so two test files with one name in different folders break collection of both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert names["test_test_layout.py"] == 1
    assert [name for name, count in names.items() if count > 1] == []
