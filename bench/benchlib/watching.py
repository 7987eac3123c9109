"""The process side of the bench's helpers (floor client, stand-in kubelet): their watch loops
and the ready file the parent waits for (see `bed.Helper`)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.kubeapi import JSON, KubeAPI

Handler = Callable[[str, JSON], None]


def list_and_watch(
    api: KubeAPI,
    path: str,
    selector: str,
    handler: Callable[[str, JSON], None],
    listed: threading.Event,
    stop: threading.Event,
    who: str,
) -> None:
    """List (each item as ADDED), then watch from that version until ``stop``, relisting after
    a 410 and watching again after any error: the loop of the bench's floor client and
    stand-in kubelet."""
    version = ""
    while not stop.is_set():
        try:
            if not version:
                listing = api.get(path, labelSelector=selector)
                for item in listing.get("items") or []:
                    handler("ADDED", item)
                version = listing["metadata"]["resourceVersion"]
                listed.set()
            query = {"labelSelector": selector}
            for event in api.watch(path, version, 300, query=query, bookmarks=False):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = ""
                    break
                version = obj.get("metadata", {}).get("resourceVersion") or version
                handler(str(event.get("type")), obj)
        except Exception as error:  # noqa: BLE001 - keep watching, whatever happened
            print(f"{who}: watch {path}: {error}", file=sys.stderr, flush=True)
            time.sleep(0.5)


def run_watches(
    api: KubeAPI,
    streams: Sequence[tuple[str, str, Handler]],
    stop: threading.Event,
    who: str,
    ready_file: Path | None,
) -> None:
    """A `list_and_watch` thread per (path, label selector, handler); the ready file once each
    listed (or after 30 s each); then wait for `stop` (SIGTERM)."""
    listed = []
    for path, selector, handler in streams:
        event = threading.Event()
        listed.append(event)
        arguments = (api, path, selector, handler, event, stop, who)
        threading.Thread(target=list_and_watch, args=arguments, daemon=True).start()
    for event in listed:
        event.wait(30)
    if ready_file:
        ready_file.write_text("ready\n")
    stop.wait()
