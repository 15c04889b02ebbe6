"""An in-memory publisher for tests and the store-less dev run: keeps every envelope, in order."""

from __future__ import annotations

import asyncio
import logging

from connector.contracts import InboundEnvelope
from connector.errors import PublishError
from connector.publish.abstract import InboundPublisher
from connector.resources import SQS_BODY_MAX_BYTES


class MemoryPublisher(InboundPublisher):
    def __init__(self) -> None:
        self.log = logging.getLogger("wa_relay.publish.memory")
        self.envelopes: list[InboundEnvelope] = []
        self.published = 0
        self._changed = asyncio.Event()

    async def publish(self, envelope: InboundEnvelope) -> None:
        body = envelope.model_dump_json()
        if len(body.encode()) > SQS_BODY_MAX_BYTES:
            raise PublishError(f"envelope {envelope.event_id} is larger than {SQS_BODY_MAX_BYTES} bytes")
        self.envelopes.append(envelope)
        self.published += 1
        self.log.info("event %s kept in memory (chat %s)", envelope.event_id, envelope.chat.jid)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[InboundEnvelope]:
        """Wait until at least ``count`` envelopes were published (tests)."""
        async with asyncio.timeout(timeout):
            while len(self.envelopes) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.envelopes
