"""Turn one Baileys ``WAMessage`` (from ``messages.upsert``) into the ``inbound.fifo`` body (``InboundEnvelope``).

Pure functions, no I/O. Decisions written down here:
- The chat is ``key.remoteJid`` exactly as received (replies go there: a LID chat stays a LID chat); ``pn``/``lid``
  come from it and ``remoteJidAlt`` (Baileys sets the alt only for 1:1 chats; ``addressingMode`` says which form the
  primary one is, the jid suffix is checked as well).
- The sender is the participant in groups (with ``participantAlt``), the chat in 1:1 chats, and the account itself
  (``me``) for ``fromMe`` messages.
- ``message.type`` is ``text`` for ``conversation``/``extendedTextMessage``, else the first content field, skipping
  the metadata fields Baileys puts next to the content (``messageContextInfo``, ``senderKeyDistributionMessage``) and
  unwrapping the container messages (ephemeral, view-once, document-with-caption).
- ``event_id`` hashes the canonical chat and participant: the LID when it is known, from the message key's alt jid or
  else from the LID map (``lids``, phone number → LID, which the caller looks up), so the PN-form and the LID-form
  emission of one message get the same id. The envelope carries the LID found that way in ``chat.lid`` /
  ``sender.lid``, and its ``MessageGroupId`` is built from the same canonical chat.
- ``message.mentions`` carries ``contextInfo.mentionedJid`` (bare jids, devices dropped): the bridge forwards the
  message as Baileys parsed it, and the function needs to know whether a group message mentions the account (the
  ``mentioned`` groups setting) without seeing the raw message.
- A message without content (``message`` null) is not published: a decrypt-failure stub (``messageStubType`` set)
  keeps the key id its real content arrives under later, and publishing the stub would make SQS FIFO deduplication
  drop that real message for five minutes. Such stubs are logged at WARNING with their stub parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from connector.contracts import (
    Account,
    ChatRef,
    InboundEnvelope,
    MessageRef,
    QuotedRef,
    RawKey,
    SenderRef,
    event_id,
    jid_user,
)
from connector.sidecar.types import WAMessage

log = logging.getLogger("wa_relay.inbound")

PN_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"

_TEXT_FIELDS = ("conversation", "extendedTextMessage")
_METADATA_FIELDS = frozenset({"messageContextInfo", "senderKeyDistributionMessage"})
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)


def is_lid(jid: str | None) -> bool:
    return bool(jid) and str(jid).endswith("@lid")


def is_pn(jid: str | None) -> bool:
    return bool(jid) and str(jid).endswith("@s.whatsapp.net")


def is_group(jid: str | None) -> bool:
    return bool(jid) and str(jid).endswith("@g.us")


def bare_pn(jid: str) -> str:
    return f"{jid_user(jid)}@{PN_SERVER}"


def bare_lid(jid: str) -> str:
    return f"{jid_user(jid)}@{LID_SERVER}"


def pn_lid(primary: str | None, alt: str | None) -> tuple[str | None, str | None]:
    """The (pn, lid) of an address given in one form with the other as its alt (either may be missing)."""
    pn = lid = None
    for jid in (primary, alt):
        if is_pn(jid) and pn is None:
            pn = bare_pn(str(jid))
        elif is_lid(jid) and lid is None:
            lid = bare_lid(str(jid))
    return pn, lid


def account_from_me(me_id: str | None, me_lid: str | None) -> Account:
    """``me`` as the bridge reports it (``15550001111:5@s.whatsapp.net``) → bare jids without device."""
    return Account(pn=bare_pn(me_id) if me_id else None, lid=bare_lid(me_lid) if me_lid else None)


def unwrap(message: dict[str, Any]) -> dict[str, Any]:
    """Strip container messages (ephemeral, view-once …) down to the content message."""
    for _ in range(4):
        for wrapper in _WRAPPERS:
            inner = message.get(wrapper)
            if isinstance(inner, dict) and isinstance(inner.get("message"), dict):
                message = inner["message"]
                break
        else:
            return message
    return message


def content_field(message: dict[str, Any]) -> str | None:
    """The name of the field that carries the content (``conversation``, ``imageMessage`` …)."""
    for name in _TEXT_FIELDS:
        if message.get(name) is not None:
            return name
    for name, value in message.items():
        if name not in _METADATA_FIELDS and value is not None:
            return name
    return None


def message_text(message: dict[str, Any]) -> str | None:
    """The text of a message: ``conversation``, ``extendedTextMessage.text`` or a media caption."""
    if isinstance(message.get("conversation"), str):
        return str(message["conversation"])
    for value in message.values():
        if isinstance(value, dict):
            for field in ("text", "caption"):
                if isinstance(value.get(field), str):
                    return str(value[field])
    return None


def _quoted(content: Any) -> QuotedRef | None:
    if not isinstance(content, dict):
        return None
    info = content.get("contextInfo")
    if not isinstance(info, dict) or not info.get("stanzaId"):
        return None
    quoted_message = info.get("quotedMessage")
    text = message_text(unwrap(quoted_message)) if isinstance(quoted_message, dict) else None
    return QuotedRef(id=str(info["stanzaId"]), text=text)


def _mentions(content: Any) -> list[str]:
    info = content.get("contextInfo") if isinstance(content, dict) else None
    jids = info.get("mentionedJid") if isinstance(info, dict) else None
    if not isinstance(jids, list):
        return []
    bare = (f"{jid_user(j)}@{j.split('@', 1)[1]}" for j in jids if isinstance(j, str) and "@" in j)
    return list(dict.fromkeys(bare))


def _timestamp(value: int | str | None, received_at_ms: int) -> int:
    try:
        return int(value) if value is not None else received_at_ms // 1000
    except (TypeError, ValueError):
        return received_at_ms // 1000


def build_envelope(
    msg: WAMessage,
    *,
    session_id: str,
    me: Account,
    upsert_type: Literal["notify", "append"],
    received_at_ms: int | None = None,
    lids: Mapping[str, str] | None = None,
) -> InboundEnvelope | None:
    """The envelope for one upserted message, or ``None`` when there is nothing to publish (see module doc).
    ``lids``: LIDs known from the LID map, by bare phone-number jid (only those the key itself does not carry)."""
    lids = lids or {}
    key = msg.key
    received = received_at_ms if received_at_ms is not None else int(time.time() * 1000)
    if not key.remoteJid or not key.id:
        log.warning("message without remoteJid or id ignored (session %s)", session_id)
        return None
    if msg.message is None:
        if msg.messageStubType is not None:
            log.warning(
                "stub message not published (session %s, id %s, chat %s, stub type %s, parameters %s): its content "
                "may arrive later under the same id",
                session_id,
                key.id,
                key.remoteJid,
                msg.messageStubType,
                msg.messageStubParameters,
            )
        else:
            log.info("message without content ignored (session %s, id %s)", session_id, key.id)
        return None

    remote = key.remoteJid
    participant = key.participant or None
    from_me = bool(key.fromMe)
    group = is_group(remote)

    chat_pn, chat_lid = (None, None) if group else pn_lid(remote, key.remoteJidAlt)
    chat_lid = chat_lid or (lids.get(chat_pn) if chat_pn else None)
    chat = ChatRef(jid=remote, pn=chat_pn, lid=chat_lid, is_group=group)

    if from_me:
        own = participant if group and participant else (me.lid if is_lid(remote) and me.lid else me.pn)
        sender = SenderRef(jid=own or remote, pn=me.pn, lid=me.lid, push_name=msg.pushName)
    elif group:
        s_pn, s_lid = pn_lid(participant, key.participantAlt)
        s_lid = s_lid or (lids.get(s_pn) if s_pn else None)
        sender = SenderRef(jid=participant or remote, pn=s_pn, lid=s_lid, push_name=msg.pushName)
    else:
        sender = SenderRef(jid=remote, pn=chat_pn, lid=chat_lid, push_name=msg.pushName)

    content = unwrap(msg.message)
    field = content_field(content)
    mtype = "text" if field in _TEXT_FIELDS else (field or "unknown")
    message = MessageRef(
        id=key.id,
        type=mtype,
        text=message_text(content),
        timestamp=_timestamp(msg.messageTimestamp, received),
        quoted=_quoted(content.get(field)) if field else None,
        mentions=_mentions(content.get(field)) if field else [],
    )
    raw_key = RawKey(
        remoteJid=remote,
        fromMe=from_me,
        id=key.id,
        participant=participant,
        remoteJidAlt=key.remoteJidAlt or None,
        participantAlt=key.participantAlt or None,
        addressingMode=key.addressingMode,
    )
    canonical_participant = (sender.lid or participant) if group and participant and not from_me else participant
    return InboundEnvelope(
        event_id=event_id(session_id, chat.lid or remote, from_me, canonical_participant, key.id),
        session_id=session_id,
        upsert_type=upsert_type,
        received_at=received,
        me=me,
        from_me=from_me,
        chat=chat,
        sender=sender,
        message=message,
        key=raw_key,
    )


def unresolved_pns(msg: WAMessage) -> list[str]:
    """The bare phone-number jids of a message's chat (1:1) and participant (groups) whose LID the key does not
    carry: what the caller looks up in the LID map for ``build_envelope``'s ``lids``."""
    key = msg.key
    if is_group(key.remoteJid):
        if key.fromMe:
            return []  # the participant is the account itself
        primary, alt = key.participant, key.participantAlt
    else:
        primary, alt = key.remoteJid, key.remoteJidAlt
    pn, lid = pn_lid(primary, alt)
    return [pn] if pn and not lid else []


def lid_pairs(msg: WAMessage) -> list[tuple[str, str]]:
    """``(lid, pn)`` pairs a message key reveals (remote jid and participant, each with its alt)."""
    pairs = []
    key = msg.key
    for primary, alt in ((key.remoteJid, key.remoteJidAlt), (key.participant, key.participantAlt)):
        pn, lid = pn_lid(primary, alt)
        if pn and lid:
            pairs.append((lid, pn))
    return pairs
