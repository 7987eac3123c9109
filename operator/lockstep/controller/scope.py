"""Which DatabaseMigrations this operator instance owns: a Kubernetes label selector (pure).

Several Lockstep instances can share a cluster (tenants, or shards of a large fleet), each with
its own Lease and its own ``--selector``; an instance acts only on the DatabaseMigrations its
selector matches and stays silent about the others. The syntax is kubectl's ``-l``:
``team=payments``, ``tier!=batch``, ``shard in (a,b)``, ``shard notin (c)``, ``owned``,
``!legacy``, joined by commas (all must hold).

Each instance lists and watches only its own Jobs (docs/adr/0020-shard-scoped-jobs.md): a Job
carries its DatabaseMigration's values of the label keys the selector names
(:func:`carried_labels`), and the API server filters Jobs by :func:`job_selector`. So an
instance no longer sees another instance's Jobs on the same database: the database's advisory
lock serializes them (the waiting run shows ``WaitingForLock``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from lockstep import constants

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

# A label key: an optional DNS-subdomain prefix and a name (kubectl's rules, loosely).
_KEY: Final = r"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE: Final = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_EQUALITY = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<not>!?)\s*(?P<key>{_KEY})\s*$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


class InvalidSelectorError(ValueError):
    """The selector text does not parse; the message says which part and what is expected."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "exists":
            return value is not None
        if self.operator == "!":
            return value is None
        if self.operator in ("=", "in"):
            return value is not None and value in self.values
        return value not in self.values  # "!=" and "notin" also match a missing label

    def text(self) -> str:
        """As kubectl and the API server's ``labelSelector`` read it."""
        values = ",".join(sorted(self.values))
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("=", "!="):
            return f"{self.key}{self.operator}{values}"
        return f"{self.key} {self.operator} ({values})"


@dataclass(frozen=True)
class Selector:
    """All requirements must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(requirement.matches(found) for requirement in self.requirements)

    def describe(self) -> str:
        return self.text or "everything"


EVERYTHING: Final = Selector()


def job_scope(selector: Selector) -> Selector:
    """The requirements a Job of this instance meets: those on keys Lockstep does not set itself.

    A requirement on one of Lockstep's own Job labels (``app.kubernetes.io/name=x`` on
    DatabaseMigrations) cannot be carried to the Job, whose own value wins: it is left out, and
    the instance sees more Jobs than its own, never fewer.
    """
    kept = tuple(r for r in selector.requirements if r.key not in constants.JOB_LABEL_KEYS)
    return Selector(kept, ",".join(r.text() for r in kept))


def carried_labels(
    selector: Selector, migration_labels: Mapping[str, str] | None
) -> dict[str, str]:
    """The DatabaseMigration's labels a Job of it carries so that its instance's selector
    matches the Job as it matches the migration: the values of the keys the selector names.

    A key the migration lacks stays absent on the Job, which is what ``key!=v``,
    ``key notin (...)`` and ``!key`` need; ``key=v``, ``key in (...)`` and ``key`` hold on a
    selected migration, so its label is there to copy.
    """
    found = migration_labels or {}
    keys = {r.key for r in job_scope(selector).requirements}
    return {key: str(found[key]) for key in sorted(keys) if key in found}


def job_selector(selector: Selector) -> str:
    """The ``labelSelector`` the API server filters this instance's Job list and watch by:
    Lockstep's Jobs (never every Job of the cluster) of the migrations this instance owns."""
    managed = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
    own = job_scope(selector).text
    return f"{managed},{own}" if own else managed


def parse(text: str | None) -> Selector:
    """``text`` as kubectl reads ``-l``; :class:`InvalidSelectorError` names the wrong part."""
    if text is None or not text.strip():
        return EVERYTHING
    return Selector(tuple(_requirement(part) for part in _split(text)), text.strip())


def _split(text: str) -> list[str]:
    """Commas separate requirements, except inside ``in (...)`` value lists."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _requirement(part: str) -> Requirement:
    if found := _SET.match(part):
        values = frozenset(v.strip() for v in found["values"].split(","))
        bad = sorted(v for v in values if not v or not _VALUE_ONLY.match(v))
        if bad:
            raise InvalidSelectorError(f"selector {part.strip()!r}: {bad} are not label values")
        return Requirement(found["key"], "in" if found["op"] == "in" else "notin", values)
    if found := _EQUALITY.match(part):
        operator: Operator = "!=" if found["op"] == "!=" else "="
        return Requirement(found["key"], operator, frozenset({found["value"]}))
    if found := _EXISTS.match(part):
        return Requirement(found["key"], "!" if found["not"] else "exists")
    raise InvalidSelectorError(
        f"selector part {part.strip()!r} is not a label requirement; write it as kubectl's -l "
        f"does: key=value, key!=value, key in (a,b), key notin (a,b), key or !key, "
        f"joined by commas"
    )
