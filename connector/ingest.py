"""Inbound messages: one ``messages.upsert`` from the bridge becomes ``InboundEnvelope``s for the publisher, and each
message's delivery receipt is released once the message is durable.

For each upserted message (``notify`` and ``append``): the LID pairs its key reveals go to the LID feed first (so
the function finds them when it resolves the event), its content goes to the message cache (Baileys asks for it
again when a recipient requests a retry), and its envelope (``connector.inbound.build_envelope``) is handed to the
publisher, in order. The echo of a message this connector sent itself is not published: Baileys emits each of our
sends back as a ``fromMe`` upsert, and publishing it cost a queue round trip and a function invocation per reply
only for the function to drop it. Messages the account sent from the phone or another device are published.
Decrypt-failure stubs are not published; ``stubs`` counts them and whether their content arrived later.

Receipts (DESIGN section 1): the bridge holds the delivery receipt of every message it emits until the connector
releases it. A published message is released when the publisher reports its envelope durable (in SQS, or fsynced in
the spool); a message that is not published (a stub, a message without content) is released once handled,
and so is one that can never be published (the error is logged; WhatsApp redelivering it would not help). A message
whose envelope did not become durable (the connector stops first) is not released: its socket closes without the
receipt, and WhatsApp delivers it again. Releases of one session are sent together, once per event-loop turn.

The session's event lane does not wait for each envelope to reach SQS: it hands envelopes over in order and the
publisher sends (or spools) them in that order; waiting would make one session publish one message per SQS round
trip, and durability is what releases the receipt, not the lane.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Protocol

from connector.contracts import Account, InboundEnvelope
from connector.errors import PublishError
from connector.inbound import build_envelope, lid_pairs, unresolved_pns
from connector.lidfeed import LidFeed
from connector.lru import Lru
from connector.messagecache import MessageCache
from connector.publish.abstract import InboundPublisher
from connector.sidecar.types import MessagesUpsert
from connector.stubs import DecryptStubs, is_decrypt_stub
from connector.tasks import spawn
from connector.types import SessionId

log = logging.getLogger("wa_relay.ingest")

OWN_SENDS_SIZE = 10_000
"""Our own sends remembered so their echo is not published (needed for seconds; a missed one is only dropped later
by the function)."""


class ReceiptSink(Protocol):
    async def release_receipts(self, session: SessionId, ids: list[str]) -> None:
        """These messages are durable (or deliberately not published): their delivery receipts may go."""
        ...


class Ingest:
    def __init__(
        self, publisher: InboundPublisher, lid_feed: LidFeed, messages: MessageCache, receipts: ReceiptSink
    ) -> None:
        self.publisher = publisher
        self.lid_feed = lid_feed
        self.messages = messages
        self.receipts = receipts
        self.published = 0
        self.stubs = DecryptStubs()
        """Decrypt-failure stubs (not published) and whether their content came later, for ``/metrics``."""
        self._own_sends: Lru[tuple[SessionId, str], None] = Lru(OWN_SENDS_SIZE)
        self._to_release: dict[SessionId, list[str]] = {}

    def own_send(self, session: SessionId, message_id: str) -> None:
        """Remember a message this connector sends, before it is sent: Baileys emits the echo first."""
        self._own_sends.put((session, message_id), None)

    async def on_upsert(self, session: SessionId, me: Account, upsert: MessagesUpsert) -> None:
        await self.lid_feed.feed([pair for msg in upsert.messages for pair in lid_pairs(msg)], "message keys")
        unresolved = [pn for msg in upsert.messages for pn in unresolved_pns(msg)]
        lids = await self.lid_feed.lids_for(unresolved) if unresolved else {}
        for msg in upsert.messages:
            message_id = msg.key.id or ""
            if msg.message is not None:
                self.messages.remember(session, msg.key.model_dump(exclude_none=True), msg.message)
                self.stubs.content(session, message_id)
            elif is_decrypt_stub(msg.messageStubType):
                self.stubs.stub(session, message_id)
            if msg.key.fromMe and (session, message_id) in self._own_sends:
                # Baileys emits our own sends without receipting anything: there is nothing to release either.
                log.debug("echo of our own send %s not published", message_id)
                continue
            envelope = build_envelope(msg, session_id=session, me=me, upsert_type=upsert.type, lids=lids)
            if envelope is None:
                self._release(session, message_id)
                continue
            try:
                done = await self.publisher.enqueue(envelope)
            except PublishError as e:
                log.error("event %s (chat %s) can never be published: %s", envelope.event_id, envelope.chat.jid, e)
                self._release(session, message_id)
                continue
            done.add_done_callback(functools.partial(self._published, session, envelope, upsert.type))

    def _published(
        self, session: SessionId, envelope: InboundEnvelope, upsert_type: str, done: asyncio.Future[None]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            # Only at shutdown. Not durable, so its receipt stays held: WhatsApp delivers it again.
            log.warning("event %s: publishing interrupted (%s)", envelope.event_id, done)
            return
        self.published += 1
        self._release(session, envelope.message.id)
        log.info(
            "event %s published (chat %s, %s, %s)",
            envelope.event_id,
            envelope.chat.jid,
            envelope.message.type,
            upsert_type,
        )

    def _release(self, session: SessionId, message_id: str) -> None:
        if not message_id:
            return
        pending = self._to_release.get(session)
        if pending is not None:
            pending.append(message_id)
            return
        self._to_release[session] = [message_id]
        spawn(self._send_releases(session), name=f"release-receipts-{session}")

    async def _send_releases(self, session: SessionId) -> None:
        await asyncio.sleep(0)  # what else becomes durable in this turn goes in the same call
        ids = self._to_release.pop(session, [])
        if ids:
            await self.receipts.release_receipts(session, ids)
