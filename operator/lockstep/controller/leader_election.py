"""The leader-election loop around the operator (I/O; the decisions are in `lease_rules`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from lockstep import kube
from lockstep.controller import lease_rules

log = logging.getLogger("lockstep.election")

T = TypeVar("T")


class Elector:
    def __init__(
        self,
        config: lease_rules.ElectionConfig,
        identity: str,
        on_change: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.on_change = on_change
        self.is_leader = False
        self._observation: lease_rules.Observation | None = None
        self._last_renewed = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")

    async def acquire(self) -> None:
        """Return once this replica holds the Lease; until then it is a standby."""
        announced = False
        while not await self._try():
            if not announced:
                holder = self._holder()
                log.info("standing by: the lease is held by %s", holder or "nobody")
                announced = True
            await asyncio.sleep(self.config.retry_period)
        self._set_leader(True)
        log.info("became the leader (lease %s/%s)", self.config.namespace, self.config.lease_name)

    async def keep(self) -> None:
        """Renew every retry period; return as soon as the renew deadline has passed."""
        while True:
            await asyncio.sleep(self.config.retry_period)
            await self._try()
            if lease_rules.lost_leadership(self._last_renewed, self.config, time.monotonic()):
                self._set_leader(False)
                log.error("lost the lease: could not renew within %ss", self.config.renew_deadline)
                return

    async def release(self) -> None:
        """Hand the Lease back on clean shutdown, so a standby need not wait for it to expire."""
        if not self.is_leader:
            return
        self._set_leader(False)
        try:
            current = await asyncio.to_thread(
                kube.read_lease, self.config.namespace, self.config.lease_name
            )
            if current is None:
                return
            spec, version = current
            record = lease_rules.record_from_spec(spec)
            if record is None or record.holder != self.identity:
                return
            spec = lease_rules.spec_from_record(lease_rules.released(record, datetime.now(UTC)))
            await asyncio.to_thread(
                kube.write_lease, self.config.namespace, self.config.lease_name, spec, version
            )
            log.info("released the lease")
        except (kube.KubeError, kube.ConflictError, kube.NotFoundError) as error:
            log.warning("could not release the lease: %s", error)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        # A thread of its own: renewals must not queue behind reconcilers' blocking calls.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def _try(self) -> bool:
        """One read-decide-write round; any failure (API down, conflict) is a lost round."""
        try:
            return await self._round()
        except Exception as error:  # noqa: BLE001 - losing a round is always safe
            log.warning("lease round failed: %s", type(error).__name__)
            return False

    async def _round(self) -> bool:
        try:
            current = await self._call(
                kube.read_lease, self.config.namespace, self.config.lease_name
            )
        except kube.KubeError as error:
            log.warning("cannot read the lease: %s", error)
            return False
        spec, version = current if current is not None else (None, None)
        now = time.monotonic()
        self._observation = lease_rules.observe(
            self._observation, lease_rules.record_from_spec(spec), now
        )
        desired = lease_rules.desired_record(
            self._observation, self.identity, self.config, now, datetime.now(UTC)
        )
        if desired is None:
            return False
        try:
            await self._call(
                kube.write_lease,
                self.config.namespace,
                self.config.lease_name,
                lease_rules.spec_from_record(desired),
                version,
            )
        except (kube.ConflictError, kube.KubeError, kube.NotFoundError) as error:
            log.debug("lease write lost: %s", error)
            return False
        self._last_renewed = now
        return True

    def _holder(self) -> str:
        record = self._observation.record if self._observation else None
        return record.holder if record else ""

    def _set_leader(self, value: bool) -> None:
        if value != self.is_leader:
            self.is_leader = value
            self.on_change(value)
