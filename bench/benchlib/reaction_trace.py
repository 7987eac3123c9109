"""Where a DatabaseMigration's created → Job time goes inside the operator (`bench/run.py --trace`).

`install(path)` runs in the operator's process (bench/traced_operator.py) before Lockstep
starts: it wraps five points of the path and appends one JSON line per hop to `path`
(time.monotonic(), so one process's clock):

* ``recv``: Kopf's watch stream yielded a DatabaseMigration or Job event (before Kopf's
  multiplexer and its per-object worker);
* ``kopf``: Kopf's worker began to process that event;
* ``handler``: Lockstep's handler got it (`watches.migration_event`);
* ``pass_start`` / ``pass_end``: a reconcile pass of the migration;
* ``request``: one API request (`kube_wire.send`), with its start, on the worker thread that
  sent it, and the migration whose pass sent it (a context variable, which `asyncio.to_thread`
  carries into the thread).

The hooks wrap Kopf internals (`kopf._cogs.clients.watching.infinite_watch`,
`kopf._core.reactor.processing.process_resource_event`): a diagnostic, not a product path.
Their own cost is a few microseconds per hop; a traced run's totals are a little slower than
an untraced one's.

`hops(path)` reads the lines back: for each migration that created a Job, the time of each
step from its ADDED event to its Job's ADDED event on the operator's own watch.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from benchlib.common import summary

_migration: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "traced_migration", default=None
)

# The hops, in order: (name, from mark, to mark). The Secret GET is part of the pass's time
# before the POST; it is absent where the operator watches Secrets (--watch-secrets).
HOPS = (
    ("Kopf: stream → worker", "recv", "kopf"),
    ("Kopf: worker → Lockstep handler", "kopf", "handler"),
    ("handler → pass starts", "handler", "pass_start"),
    ("pass: start → Job POST sent", "pass_start", "post_start"),
    ("  of which the Secret GET (worker thread)", "secret_start", "secret_end"),
    ("Job POST sent → Job seen on own watch", "post_start", "job_seen"),
    ("all: migration seen → Job seen", "recv", "job_seen"),
)
SECRET_MARKS = frozenset({"secret_start", "secret_end"})


def install(path: Path) -> None:
    """Wrap the hops (before Kopf and Lockstep's handlers start)."""
    out = path.open("a", buffering=1)
    lock = threading.Lock()

    def note(what: str, **fields: Any) -> None:
        line = json.dumps({"t": time.monotonic(), "what": what, **fields})
        with lock:
            out.write(line + "\n")

    _wrap_kopf(note)
    _wrap_lockstep(note)


def _wrap_kopf(note: Callable[..., None]) -> None:
    from kopf._cogs.clients import watching
    from kopf._core.reactor import processing

    watch = watching.infinite_watch

    async def traced_watch(**kwargs: Any) -> AsyncIterator[Any]:
        plural = kwargs["resource"].plural
        async for event in watch(**kwargs):
            if isinstance(event, dict) and plural in ("databasemigrations", "jobs"):
                note("recv", plural=plural, type=event.get("type"), name=_name(event))
            yield event

    process = processing.process_resource_event

    async def traced_process(**kwargs: Any) -> Any:
        raw_event = kwargs["raw_event"]  # Kopf passes every argument by keyword
        note("kopf", name=_name(raw_event), type=raw_event.get("type"))
        return await process(**kwargs)

    watching.infinite_watch = traced_watch
    processing.process_resource_event = traced_process  # type: ignore[assignment]


def _wrap_lockstep(note: Callable[..., None]) -> None:
    from lockstep import kube_wire
    from lockstep.controller import reconcile, watches

    handle = watches.migration_event

    def traced_handler(reconciler: Any, kind: str | None, body: Mapping[str, Any]) -> None:
        note("handler", name=body["metadata"]["name"], type=kind)
        handle(reconciler, kind, body)

    one_pass = reconcile.Reconciler.reconcile_once

    async def traced_pass(self: Any, key: tuple[str, str], full: bool = True) -> None:
        note("pass_start", name=key[1], full=full)
        token = _migration.set(key[1])
        try:
            await one_pass(self, key, full)
        finally:
            _migration.reset(token)
            note("pass_end", name=key[1])

    send = kube_wire.send

    def traced_send(sender: Any, method: str, path: str, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return send(sender, method, path, **kwargs)
        finally:
            note("request", start=started, method=method, path=path, name=_migration.get())

    watches.migration_event = traced_handler
    reconcile.Reconciler.reconcile_once = traced_pass  # type: ignore[method-assign]
    kube_wire.send = traced_send


def _name(event: Mapping[str, Any]) -> str | None:
    metadata = (event.get("object") or {}).get("metadata") or {}
    return metadata.get("name")


def marks(path: Path) -> dict[str, dict[str, float]]:
    """Per migration that created a Job: the first time of each mark (seconds)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found: dict[str, dict[str, float]] = {}

    def first(name: str | None, mark: str, at: float) -> None:
        if name is not None:
            found.setdefault(name, {}).setdefault(mark, at)

    for row in rows:
        what, name, at = row["what"], row.get("name"), row["t"]
        if what == "recv" and row["plural"] == "databasemigrations" and row["type"] == "ADDED":
            first(name, "recv", at)
        elif what == "recv" and row["plural"] == "jobs" and row["type"] == "ADDED" and name:
            first(name.rsplit("-", 1)[0], "job_seen", at)  # <migration>-<hash>
        elif what in ("kopf", "handler", "pass_start") and name in found:
            first(name, what, at)
        elif what == "request" and row["method"] == "GET" and "/secrets/" in row["path"]:
            first(name, "secret_start", row["start"])
            first(name, "secret_end", at)
        elif what == "request" and row["method"] == "POST" and row["path"].endswith("/jobs"):
            first(name, "post_start", row["start"])
    needed = {mark for _, start, end in HOPS for mark in (start, end)} - SECRET_MARKS
    complete = {name: times for name, times in found.items() if needed <= set(times)}
    for times in complete.values():
        # Only a GET of that first pass before its POST counts (not a later pass's).
        if not times["pass_start"] <= times.get("secret_start", -1.0) <= times["post_start"]:
            for mark in SECRET_MARKS:
                times.pop(mark, None)
    return complete


def hops(path: Path) -> dict[str, Any]:
    """Each hop's summary (milliseconds) over the migrations that have every mark."""
    found = marks(path)
    table = {
        label: summary(
            [(times[end] - times[start]) * 1000 for times in found.values() if end in times], 2
        )
        for label, start, end in HOPS
    }
    return {"migrations": len(found), "milliseconds": table}


def render(result: Mapping[str, Any]) -> str:
    lines = [f"created → Job inside the operator (n={result['migrations']}), ms:"]
    for label, numbers in result["milliseconds"].items():
        if numbers.get("n"):
            lines.append(
                f"  {label:42} p50 {numbers['p50']:7.2f}   p95 {numbers['p95']:7.2f}"
                f"   (n={numbers['n']})"
            )
    return "\n".join(lines)
