"""The cache's index keeps a group of one as its key and a larger group as a set; what it
answers must not depend on which."""

from __future__ import annotations

from typing import Any

from lockstep.controller.cache_index import Groups, Index


def body(label: str | None) -> dict[str, Any]:
    return {"metadata": {"labels": {"db": label} if label else {}}}


def index() -> Index:
    return Index(lambda b: b["metadata"]["labels"].get("db"))


def test_a_group_grows_from_one_to_many_and_shrinks_back_to_nothing() -> None:
    by_db = index()
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    by_db.put(a, body("x"))
    assert by_db.get("x") == {a}
    by_db.put(b, body("x"))
    by_db.put(c, body("x"))
    assert by_db.get("x") == {a, b, c}
    by_db.drop(b)
    by_db.drop(a)
    assert by_db.get("x") == {c}
    assert len(by_db) == 1
    by_db.drop(c)
    assert by_db.get("x") == frozenset()
    assert len(by_db) == 0


def test_a_body_whose_value_changed_moves_between_groups() -> None:
    by_db = index()
    a, b = ("ns", "a"), ("ns", "b")
    by_db.put(a, body("x"))
    by_db.put(b, body("x"))
    by_db.put(a, body("y"))
    assert (by_db.get("x"), by_db.get("y")) == ({b}, {a})
    by_db.put(b, body(None))  # the label went away: filed nowhere
    assert by_db.get("x") == frozenset()
    assert len(by_db) == 1


def test_putting_the_same_value_again_or_dropping_an_unknown_key_changes_nothing() -> None:
    by_db = index()
    a = ("ns", "a")
    by_db.put(a, body("x"))
    by_db.put(a, body("x"))
    by_db.drop(("ns", "unknown"))
    assert by_db.get("x") == {a}
    assert len(by_db) == 1


def test_a_group_of_one_is_stored_without_a_set() -> None:
    by_db = index()
    for name in ("a", "b"):
        by_db.put(("ns", name), body(name))
    assert not any(isinstance(group, set) for group in by_db._groups._groups.values())


def test_groups_hold_a_key_in_several_groups_and_adding_twice_keeps_one() -> None:
    readers = Groups()
    a, b = ("ns", "a"), ("ns", "b")
    readers.add("secret", a)
    readers.add("secret", a)
    readers.add("config", a)
    readers.add("secret", b)
    assert (readers.get("secret"), readers.get("config")) == ({a, b}, {a})
    readers.discard("config", b)  # not in that group: nothing changes
    readers.discard("config", a)
    assert "config" not in readers
    readers.discard("secret", a)
    assert readers.get("secret") == {b}
    assert len(readers) == 1
