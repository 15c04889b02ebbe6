"""The publisher interface: one call per WhatsApp message event."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from connector.contracts import InboundEnvelope


class InboundPublisher(ABC):
    """Hands envelopes to the inbound queue. ``publish`` returns only once the envelope is durable (in the queue or
    in a local spool that is drained into it later); it raises ``PublishError`` for an envelope that can never be
    published (too large), and for nothing else."""

    published: int = 0
    """Envelopes accepted since start (for ``/metrics``)."""
    spool_write_errors: int = 0
    """Spool disk operations that failed since start (for ``/metrics``)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open clients, recover state. Default: nothing."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Idempotent; safe after a failed ``start``. Default: nothing."""

    @property
    def spool_depth(self) -> int:
        """Envelopes waiting in the local spool (0 for publishers without one)."""
        return 0

    @property
    def spool_bytes(self) -> int:
        """Bytes the local spool takes on disk (0 for publishers without one)."""
        return 0

    @property
    def degraded(self) -> str | None:
        """Why envelopes cannot be made durable now (they wait unacknowledged), or ``None`` while they can. A
        degraded connector answers ``/readyz`` with 503."""
        return None

    @abstractmethod
    async def publish(self, envelope: InboundEnvelope) -> None:
        """Durably hand over one envelope (see the class doc)."""

    async def enqueue(self, envelope: InboundEnvelope) -> asyncio.Future[None]:
        """Take the envelope in order behind every envelope enqueued before it, without waiting for it to become
        durable; the future resolves when it is (as ``publish`` would return). Raises ``PublishError`` at once for
        an envelope that can never be published. May wait first while the publisher holds as many envelopes that are
        not yet durable as it may keep in memory. Default: ``publish``, then an already resolved future."""
        await self.publish(envelope)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done
