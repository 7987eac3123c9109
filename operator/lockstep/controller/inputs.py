"""The inputs DatabaseMigrations read (ConfigMaps, Secrets), kept fresh by watches.

A full pass needs the ConfigMap's digest (it names the Job) and the database URL (its database
key serializes runs per database). Read with GETs, they were two round trips before every Job
and two requests per migration at every resync (issue 21, ADR 19). Here the watches keep:

* for **every ConfigMap** in scope, the digest of its data only (64 characters: never the files);
* for **Secrets that a cached DatabaseMigration references**, their data as the API serves it
  (base64), dropped when the last migration that referenced them goes; of every other Secret,
  nothing. The operator may read those Secrets by name anyway; values stay in memory, are never
  logged or written anywhere (`CachedSecrets` decodes one key when asked).

A miss is never taken for "absent": the caller reads with a GET, so a missing input yields the
same condition and grace as before, and one that the watch has not delivered yet is still found.
An edit of a watched input re-plans the migrations that read it (`put_*` return them).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping
from typing import Any

from lockstep.controller.cache import Key, key_of
from lockstep.controller.cache_index import Groups
from lockstep.controller.cluster import KubeApi
from lockstep.model import Spec, content_digest

CONFIG_MAP = "ConfigMap"
SECRET = "Secret"  # noqa: S105 - a kind, not a password
Ref = tuple[str, str, str]  # (kind, namespace, name)


def references(namespace: str, spec: Spec) -> set[Ref]:
    """The ConfigMap and Secrets a spec reads (the operator's reads, not the pod's)."""
    refs: set[Ref] = set()
    if spec.source_config_map:
        refs.add((CONFIG_MAP, namespace, spec.source_config_map))
    secrets = [spec.url_secret.name if spec.url_secret else None]
    if spec.connection is not None:
        secrets += [part.secret.name for _, part in spec.connection.parts() if part.secret]
    if spec.tls is not None:
        secrets.append(spec.tls.secret_name)
    if spec.shadow_secret is not None:
        secrets.append(spec.shadow_secret.name)
    refs.update((SECRET, namespace, name) for name in secrets if name)
    return refs


class InputCache:
    def __init__(self) -> None:
        self._digests: dict[Key, str] = {}
        self._secrets: dict[Key, dict[str, str]] = {}
        # Who reads what: the references of each migration's last full pass, and their inverse.
        # (Tuples and `Groups`: 10,000 migrations' small sets were several MiB, ADR 0015.)
        self._uses: dict[Key, tuple[Ref, ...]] = {}
        self._users = Groups()
        # Secrets being read by GET: True once a watch event for them came in meanwhile (the
        # GET's answer may then be older than what the watch said: it is not kept).
        self._filling: dict[Key, bool] = {}
        # Set by the Kopf handlers when the Secret watch runs; without it nothing is kept from a
        # GET (no watch would ever correct it), and every Secret read is a GET as before.
        self.secrets_watched = False

    # What a migration reads
    def use(self, migration: Key, refs: Iterable[Ref]) -> None:
        """Record the inputs a migration's pass reads (before reading them: edits from now on
        re-plan it, and a Secret's data is kept while someone reads it)."""
        new = set(refs)
        old = set(self._uses.pop(migration, ()))
        for ref in old - new:
            self._release(ref, migration)
        for ref in new - old:
            self._users.add(ref, migration)
        if new:
            self._uses[migration] = tuple(new)

    def forget(self, migration: Key) -> None:
        self.use(migration, ())

    def users(self, ref: Ref) -> set[Key]:
        return set(self._users.get(ref))

    def _release(self, ref: Ref, migration: Key) -> None:
        self._users.discard(ref, migration)
        if ref not in self._users and ref[0] == SECRET:
            self._secrets.pop(ref[1:], None)

    # ConfigMaps (watch)
    def put_config_map(self, body: Mapping[str, Any]) -> set[Key]:
        """Keep the digest; the migrations to re-plan when it changed."""
        key = key_of(body)
        digest = content_digest(dict(body.get("data") or {}))
        if self._digests.get(key) == digest:
            return set()
        self._digests[key] = digest
        return self.users((CONFIG_MAP, *key))

    def drop_config_map(self, key: Key) -> set[Key]:
        self._digests.pop(key, None)
        return self.users((CONFIG_MAP, *key))

    def config_map_digest(self, namespace: str, name: str) -> str | None:
        return self._digests.get((namespace, name))

    # Secrets (watch)
    def put_secret(self, body: Mapping[str, Any]) -> set[Key]:
        """Keep the data of a Secret someone reads; the migrations to re-plan when it changed."""
        key = key_of(body)
        if key in self._filling:
            self._filling[key] = True
        users = self.users((SECRET, *key))
        if not users:
            self._secrets.pop(key, None)
            return set()
        data = {str(k): str(v) for k, v in (body.get("data") or {}).items()}
        if self._secrets.get(key) == data:
            return set()
        self._secrets[key] = data
        return users

    def drop_secret(self, key: Key) -> set[Key]:
        if key in self._filling:
            self._filling[key] = True
        self._secrets.pop(key, None)
        return self.users((SECRET, *key))

    def secret_data(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self._secrets.get((namespace, name))

    def begin_fill(self, key: Key) -> bool:
        """A pass is about to GET a whole Secret to keep it; False if one already is."""
        if key in self._filling:
            return False
        self._filling[key] = False
        return True

    def end_fill(self, key: Key, data: Mapping[str, str] | None) -> None:
        """Keep what the GET found, unless the watch spoke meanwhile or nobody reads it now."""
        raced = self._filling.pop(key, True)
        if data is not None and not raced and self.users((SECRET, *key)):
            self._secrets[key] = dict(data)

    def sizes(self) -> dict[str, int]:
        return {"config_maps": len(self._digests), "secrets": len(self._secrets)}


class CachedSecrets:
    """Secret values for `credentials.read_url`: from the watch when kept, else a GET.

    The first reader of a Secret reads all of it once (a GET) and keeps it, if the Secret watch
    runs and no watch event came while the GET was under way; the watch keeps it fresh after.
    """

    def __init__(self, cache: InputCache, api: KubeApi) -> None:
        self.cache = cache
        self.api = api

    async def value(self, namespace: str, name: str, key: str) -> str:
        data = self.cache.secret_data(namespace, name)
        if data is None and self._may_keep(namespace, name):
            data = await self._fill((namespace, name))
        if data is not None and key in data:
            return base64.b64decode(data[key]).decode()
        # Not kept, or no such key as far as the watch knows: the API decides (NotFoundError).
        return await asyncio.to_thread(self.api.read_secret_value, namespace, name, key)

    def _may_keep(self, namespace: str, name: str) -> bool:
        return self.cache.secrets_watched and bool(self.cache.users((SECRET, namespace, name)))

    async def _fill(self, key: Key) -> Mapping[str, str] | None:
        if not self.cache.begin_fill(key):
            return None  # another pass is reading it: this one reads its key by itself
        data: dict[str, str] | None = None
        try:
            data = await asyncio.to_thread(self.api.read_secret_raw, *key)
        finally:
            self.cache.end_fill(key, data)
        return data
