"""The cache's indices: objects grouped by a value their body yields (see `cache`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class Index:
    """Objects grouped by a value their body yields (a label, or (namespace, label)).

    `put` files an object under its new value and out of its old one, so a body whose labels
    changed moves between groups; `drop` removes it. Empty groups are deleted (bounded memory).
    A group of one is kept as its key, not a set: most groups hold one object (a migration's
    live Job, a database's one migration), and 20,000 one-element sets were 13.9 MiB of a
    10,000-migration operator (ADR 0015 point 11).
    """

    def __init__(self, value_of: Callable[[Mapping[str, Any]], Any]) -> None:
        self._value_of = value_of
        self._groups: dict[Any, Key | set[Key]] = {}
        self._filed: dict[Key, Any] = {}

    def put(self, key: Key, body: Mapping[str, Any]) -> None:
        value = self._value_of(body)
        old = self._filed.get(key)
        if old == value and key in self._filed:
            return
        self.drop(key)
        if value is None:
            return
        self._filed[key] = value
        group = self._groups.get(value)
        if group is None:
            self._groups[value] = key
        elif isinstance(group, set):
            group.add(key)
        else:
            self._groups[value] = {group, key}

    def drop(self, key: Key) -> None:
        if key not in self._filed:
            return
        value = self._filed.pop(key)
        group = self._groups.get(value)
        if group is None:
            return
        if not isinstance(group, set):
            del self._groups[value]  # a group of one: `key` itself
            return
        group.discard(key)
        if len(group) == 1:
            self._groups[value] = next(iter(group))
        elif not group:
            del self._groups[value]

    def get(self, value: Any) -> AbstractSet[Key]:
        """The group's keys; the live set for a group of several (copy it before changing the
        cache while iterating)."""
        group = self._groups.get(value)
        if group is None:
            return frozenset()
        return group if isinstance(group, set) else frozenset((group,))

    def __len__(self) -> int:
        return len(self._groups)
