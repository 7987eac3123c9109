"""The cache's indices: objects grouped by a value their body yields (see `cache`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class Groups:
    """Keys grouped by a value, a key in any number of groups; empty groups are deleted.

    A group of one is kept as its key, not a set: most groups hold one key (a migration's live
    Job, a database's one migration, a ConfigMap's one reader), and 20,000 one-element sets were
    13.9 MiB of a 10,000-migration operator (ADR 0015 point 11). Keys are tuples, never sets.
    """

    def __init__(self) -> None:
        self._groups: dict[Hashable, Key | set[Key]] = {}

    def add(self, value: Hashable, key: Key) -> None:
        group = self._groups.get(value)
        if group is None:
            self._groups[value] = key
        elif isinstance(group, set):
            group.add(key)
        elif group != key:
            self._groups[value] = {group, key}

    def discard(self, value: Hashable, key: Key) -> None:
        group = self._groups.get(value)
        if group is None:
            return
        if not isinstance(group, set):
            if group == key:
                del self._groups[value]
            return
        group.discard(key)
        if len(group) == 1:
            self._groups[value] = next(iter(group))
        elif not group:
            del self._groups[value]

    def get(self, value: Hashable) -> AbstractSet[Key]:
        """The group's keys; the live set for a group of several (copy it before changing the
        groups while iterating)."""
        group = self._groups.get(value)
        if group is None:
            return frozenset()
        return group if isinstance(group, set) else frozenset((group,))

    def __contains__(self, value: Hashable) -> bool:
        return value in self._groups

    def __len__(self) -> int:
        return len(self._groups)


class Index:
    """Objects grouped by a value their body yields (a label, or (namespace, label)).

    `put` files an object under its new value and out of its old one, so a body whose labels
    changed moves between groups; `drop` removes it.
    """

    def __init__(self, value_of: Callable[[Mapping[str, Any]], Any]) -> None:
        self._value_of = value_of
        self._groups = Groups()
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
        self._groups.add(value, key)

    def drop(self, key: Key) -> None:
        if key in self._filed:
            self._groups.discard(self._filed.pop(key), key)

    def get(self, value: Any) -> AbstractSet[Key]:
        """The group's keys (see `Groups.get`)."""
        return self._groups.get(value)

    def __len__(self) -> int:
        return len(self._groups)
