"""Sending a message once and keeping its record: the outbound consumer's replies and the API's sends both go through
``Replies``.

A send goes through the session manager with a WhatsApp id chosen before it (derived from the reply id, or from the
API request's ``Idempotency-Key``; Baileys sends with the id it is given), and is then recorded in the reply log with
its content (``SentReply``). The record is what keeps a redelivered reply or a retried request from going out twice,
and what ``RelayHost.message_get`` (Baileys' ``getMessage``) falls back on when the contact's phone asks for a retry
after the message left the in-memory cache (a restart, or eviction).

The content is built here the way Baileys builds it for ``{"text": ...}``: an ``extendedTextMessage``, a quote as its
``contextInfo`` (the quoted id, its sender and, when the message cache has it, the quoted content). The echo Baileys
emits of each of our sends carries its exact message too, but on the event lane, not with the send's answer, so it
cannot be recorded with the send.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

from connector.contracts import api_reply_id, whatsapp_message_id
from connector.errors import IdempotencyKeyReused, StoreError
from connector.locks import KeyedLocks
from connector.messagecache import MessageCache
from connector.store.abstract import ReplyLog, SentReply
from connector.types import SessionId

_NOT_CONTENT = frozenset({"messageContextInfo", "senderKeyDistributionMessage"})


class MessageSender(Protocol):
    async def send_text(
        self,
        sid: SessionId,
        to: str,
        text: str,
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
        quoted_id: str | None = None,
    ) -> str: ...


def message_content(text: str, quoted: dict[str, Any] | None, quoted_message: dict[str, Any] | None) -> dict[str, Any]:
    """The message Baileys sends for ``{"text": text}`` quoting the message ``quoted`` (a key) whose content is
    ``quoted_message``: a quote names its sender (``participant``; our own messages' sender is left out, Baileys
    fills in the account) and copies only the quoted content, not the quote inside it."""
    body: dict[str, Any] = {"text": text}
    if quoted and quoted.get("id"):
        context: dict[str, Any] = {"stanzaId": quoted["id"]}
        sender = quoted.get("participant") or (None if quoted.get("fromMe") else quoted.get("remoteJid"))
        if sender:
            context["participant"] = sender
        kinds = (k for k in quoted_message or {} if k == "conversation" or k.endswith("Message"))
        kind = next((k for k in kinds if k not in _NOT_CONTENT), None)
        if quoted_message and kind:
            inner = quoted_message[kind]
            if isinstance(inner, dict):
                inner = {k: v for k, v in inner.items() if k != "contextInfo"}
            context["quotedMessage"] = {kind: inner}
        body["contextInfo"] = context
    return {"extendedTextMessage": body}


def request_digest(to: str, text: str, quoted_id: str | None) -> str:
    """What an ``Idempotency-Key`` is bound to: the recipient as resolved, the text and the quote."""
    return hashlib.sha256(json.dumps([to, text, quoted_id or ""]).encode()).hexdigest()


class Replies:
    def __init__(self, sender: MessageSender, reply_log: ReplyLog, messages: MessageCache) -> None:
        self.log = logging.getLogger("wa_relay.replies")
        self.sender = sender
        self.reply_log = reply_log
        self.messages = messages
        self._keys = KeyedLocks()

    async def sent(self, session: SessionId, message_id: str) -> SentReply | None:
        """The record of a message this connector sent (``None``: not sent, or its record expired)."""
        return await self.reply_log.get_sent(session, message_id)

    async def send(
        self,
        session: SessionId,
        to: str,
        text: str,
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
        quoted_id: str | None = None,
        reply_id: str | None = None,
        request: str | None = None,
    ) -> SentReply:
        """Send a text (``SessionManager.send_text``: the same arguments and errors) and return its record, not
        written yet (``record``): what happens when it cannot be written is the caller's decision."""
        sent_id = await self.sender.send_text(
            session, to, text, message_id=message_id, quoted=quoted, quoted_id=quoted_id
        )
        if quoted is None and quoted_id:
            quoted = self.messages.key(session, quoted_id)
        quoted_message = self.messages.content(session, quoted["id"]) if quoted and quoted.get("id") else None
        # The fullest content that fits in one record: with the quoted message's copy, without it, or (a text over
        # WhatsApp's length limit, which an outbound body can carry) none at all.
        for content in (message_content(text, quoted, quoted_message), message_content(text, quoted, None)):
            try:
                return SentReply(session, sent_id, to, content, reply_id=reply_id, request=request)
            except ValueError:
                continue
        self.log.warning("message %s of %s is too large to keep for retries; recorded without it", sent_id, session)
        return SentReply(session, sent_id, to, None, reply_id=reply_id, request=request)

    async def record(self, sent: SentReply) -> None:
        await self.reply_log.record_sent(sent)

    async def send_request(
        self, session: SessionId, to: str, text: str, *, quoted_id: str | None = None, key: str | None = None
    ) -> str:
        """An API send; returns its WhatsApp message id.

        With an ``Idempotency-Key`` (``key``) it is sent at most once per session and key, for as long as the reply
        log keeps its record: its id is derived from both (``api_reply_id``), so a retry after a crash between send
        and record is the same WhatsApp message (the phone drops it); a retry that finds the record answers with the
        same id without sending, or raises ``IdempotencyKeyReused`` if the request differs. Requests with one key
        are serialized here, so concurrent ones cannot both send. A record that cannot be written fails the request
        (``StoreError``): the client retries with the same key.

        Without a key a failed record is only logged: the message is out, and an error would make the client send
        it again under a new id."""
        if key is None:
            sent = await self.send(session, to, text, quoted_id=quoted_id)
            try:
                await self.record(sent)
            except StoreError as e:
                self.log.warning("message %s of %s sent, but not recorded for retries: %s", sent.message_id, session, e)
            return sent.message_id
        reply_id = api_reply_id(session, key)
        message_id = whatsapp_message_id(reply_id)
        digest = request_digest(to, text, quoted_id)
        async with self._keys.hold(f"{session}#{message_id}"):
            prior = await self.sent(session, message_id)
            if prior is not None:
                if prior.request != digest:
                    raise IdempotencyKeyReused(
                        f"Idempotency-Key {key!r} already sent another message from session {session}"
                    )
                self.log.info("request with a known Idempotency-Key answered with message %s", message_id)
                return prior.message_id
            sent = await self.send(
                session, to, text, message_id=message_id, quoted_id=quoted_id, reply_id=reply_id, request=digest
            )
            await self.record(sent)
            return sent.message_id
