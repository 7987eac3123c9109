"""The leader-election loop around the operator (I/O; the decisions are in `leader`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lockstep import kube, leader

log = logging.getLogger("lockstep.election")


class Elector:
    def __init__(
        self,
        config: leader.ElectionConfig,
        identity: str,
        on_change: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.on_change = on_change
        self.is_leader = False
        self._observation: leader.Observation | None = None
        self._last_renewed = 0.0

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
            if leader.lost_leadership(self._last_renewed, self.config, time.monotonic()):
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
            record = leader.record_from_spec(spec)
            if record is None or record.holder != self.identity:
                return
            spec = leader.spec_from_record(leader.released(record, datetime.now(UTC)))
            await asyncio.to_thread(
                kube.write_lease, self.config.namespace, self.config.lease_name, spec, version
            )
            log.info("released the lease")
        except (kube.KubeError, kube.ConflictError, kube.NotFoundError) as error:
            log.warning("could not release the lease: %s", error)

    async def _try(self) -> bool:
        try:
            current = await asyncio.to_thread(
                kube.read_lease, self.config.namespace, self.config.lease_name
            )
        except kube.KubeError as error:
            log.warning("cannot read the lease: %s", error)
            return False
        spec, version = current if current is not None else (None, None)
        now = time.monotonic()
        self._observation = leader.observe(self._observation, leader.record_from_spec(spec), now)
        desired = leader.desired_record(
            self._observation, self.identity, self.config, now, datetime.now(UTC)
        )
        if desired is None:
            return False
        try:
            await asyncio.to_thread(
                kube.write_lease,
                self.config.namespace,
                self.config.lease_name,
                leader.spec_from_record(desired),
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
