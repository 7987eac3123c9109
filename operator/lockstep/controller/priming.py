"""A new leader's first look at Lockstep's Jobs and their pods, before any pass plans.

A pass plans from the cache. One that ran before the running Jobs were cached would start
another attempt beside a Job that is still running (a new leader's race, issue 21). Kopf starts
its watches only after every startup handler has returned, so the operator lists Lockstep's
Jobs and pods in a startup handler, into the cache, and only then do DatabaseMigration events
(and so passes) arrive; Kopf's own Job and pod watches keep the cache fresh from there.

The listing is paged and each object is slimmed to what the cache keeps (`kept_fields`) as its
page arrives, so it costs one page of full bodies at a time, whatever the fleet's size. A page's
continue token that outlives the API server's history (HTTP 410, after about five minutes of
listing) lists that kind again from the start: objects already cached are put again, which
changes nothing.

Before this, Kopf *indexers* held every handler until each listed Job and pod had been indexed.
Kopf tracks that with one toggle per listed object and wakes every waiting worker each time a
toggle is made or dropped: quadratic in the objects listed. At 10,000 migrations with 5
releases each (100,000 Jobs and pods) the operator spent 96 % of a core there for over ten
minutes and grew past 2 GiB (docs/performance-history.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lockstep import kube
from lockstep.controller.cluster import KubeApi

log = logging.getLogger(__name__)

PAGE_SIZE: Final = 500
ATTEMPTS: Final = 3  # listings of one kind cut short by an expired continue token
RETRY_SECONDS: Final = 2.0  # after a failed listing (API server unreachable), list again


@dataclass(frozen=True)
class Primed:
    jobs: int
    pods: int
    pages: int
    seconds: float


async def prime(
    api: KubeApi,
    put_job: Callable[[Mapping[str, Any]], None],
    put_pod: Callable[[Mapping[str, Any]], None],
    namespaces: Sequence[str],
    label_selector: str,
    page_size: int = PAGE_SIZE,
) -> Primed:
    """List Lockstep's Jobs, then their pods (in `namespaces`, or all), into the cache."""
    started = time.monotonic()
    pages = 0
    counts: dict[str, int] = {}
    for plural, put in (("jobs", put_job), ("pods", put_pod)):
        counts[plural] = 0
        every: list[str | None] = [*namespaces] or [None]
        for namespace in every:
            listed, used = await _list_all(api, plural, namespace, label_selector, put, page_size)
            counts[plural] += listed
            pages += used
    primed = Primed(counts["jobs"], counts["pods"], pages, time.monotonic() - started)
    log.info(
        "listed %d job(s) and %d pod(s) of Lockstep's into the cache in %.1f s (%d pages) "
        "before the first pass (pods no pass will read are not kept)",
        primed.jobs,
        primed.pods,
        primed.seconds,
        primed.pages,
    )
    return primed


async def _list_all(
    api: KubeApi,
    plural: str,
    namespace: str | None,
    label_selector: str,
    put: Callable[[Mapping[str, Any]], None],
    page_size: int,
) -> tuple[int, int]:
    """Every page of one kind: (objects, pages). Lists again from the start on HTTP 410."""
    for attempt in range(1, ATTEMPTS + 1):
        listed = pages = 0
        token = ""
        try:
            while True:
                items, token = await asyncio.to_thread(
                    api.list_page, plural, namespace, label_selector, token, page_size
                )
                pages += 1
                for item in items:
                    put(item)
                listed += len(items)
                del items
                if not token:
                    return listed, pages
        except kube.ExpiredError:
            if attempt == ATTEMPTS:
                raise
            log.warning(
                "listing %s: the page token expired after %d page(s); listing again (%d of %d)",
                plural,
                pages,
                attempt + 1,
                ATTEMPTS,
            )
    raise AssertionError("unreachable")  # pragma: no cover
