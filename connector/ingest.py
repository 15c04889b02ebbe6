"""Inbound messages: one ``messages.upsert`` from the bridge becomes ``InboundEnvelope``s for the publisher.

For each upserted message (``notify`` and ``append``): the LID pairs its key reveals go to the LID feed first (so
the function finds them when it resolves the event), its content goes to the message cache (Baileys asks for it
again when a recipient requests a retry), and its envelope (``connector.inbound.build_envelope``) is handed to the
publisher, in order. The echo of a message this connector sent itself is not published: Baileys emits each of our
sends back as a ``fromMe`` upsert, and publishing it cost a queue round trip and a function invocation per reply
only for the function to drop it. Messages the account sent from the phone or another device are published.

The session's event lane does not wait for each envelope to reach SQS: it hands envelopes over in order and the
publisher sends (or spools) them in that order; waiting would make one session publish one message per SQS round
trip and would not make anything more durable (the envelope is as volatile in the publisher's queue as in the lane).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from connector.contracts import Account, InboundEnvelope
from connector.errors import PublishError
from connector.inbound import build_envelope, lid_pairs
from connector.lidfeed import LidFeed
from connector.lru import Lru
from connector.messagecache import MessageCache
from connector.publish.abstract import InboundPublisher
from connector.sidecar.types import MessagesUpsert
from connector.types import SessionId

log = logging.getLogger("wa_relay.ingest")

OWN_SENDS_SIZE = 10_000
"""Our own sends remembered so their echo is not published (needed for seconds; a missed one is only dropped later
by the function)."""


class Ingest:
    def __init__(self, publisher: InboundPublisher, lid_feed: LidFeed, messages: MessageCache) -> None:
        self.publisher = publisher
        self.lid_feed = lid_feed
        self.messages = messages
        self.published = 0
        self._own_sends: Lru[tuple[SessionId, str], None] = Lru(OWN_SENDS_SIZE)

    def own_send(self, session: SessionId, message_id: str) -> None:
        """Remember a message this connector sends, before it is sent: Baileys emits the echo first."""
        self._own_sends.put((session, message_id), None)

    async def on_upsert(self, session: SessionId, me: Account, upsert: MessagesUpsert) -> None:
        await self.lid_feed.feed([pair for msg in upsert.messages for pair in lid_pairs(msg)], "message keys")
        for msg in upsert.messages:
            if msg.message is not None:
                self.messages.remember(session, msg.key.model_dump(exclude_none=True), msg.message)
            if msg.key.fromMe and (session, msg.key.id or "") in self._own_sends:
                log.debug("echo of our own send %s not published", msg.key.id)
                continue
            envelope = build_envelope(msg, session_id=session, me=me, upsert_type=upsert.type)
            if envelope is None:
                continue
            try:
                done = await self.publisher.enqueue(envelope)
            except PublishError as e:
                log.error("event %s (chat %s) not published: %s", envelope.event_id, envelope.chat.jid, e)
                continue
            done.add_done_callback(functools.partial(self._published, envelope, upsert.type))

    def _published(self, envelope: InboundEnvelope, upsert_type: str, done: asyncio.Future[None]) -> None:
        if done.cancelled() or done.exception() is not None:
            # Only at shutdown: the publisher spools what it has not sent, so this is not a loss.
            log.warning("event %s: publishing interrupted (%s)", envelope.event_id, done)
            return
        self.published += 1
        log.info(
            "event %s published (chat %s, %s, %s)",
            envelope.event_id,
            envelope.chat.jid,
            envelope.message.type,
            upsert_type,
        )
