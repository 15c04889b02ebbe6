"""Wire contract of the bridge protocol, Python side (the Node side is ``bridge/src/protocol.ts``).

``bridge/PROTOCOL.md`` is the prose version; ``tests/fixtures/bridge/`` holds golden examples that the tests of both
sides load. Field names follow the wire (and Baileys), hence camelCase.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
DECRYPTED_MESSAGE_TYPE = "decrypted-message"
"""The key type under which the bridge stores each decrypted message's plaintext (its decrypted-message buffer), in
the same ``keys.set`` as the ratchet state the decryption consumed."""
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Session = Field(pattern=SESSION_ID_PATTERN)


class WireModel(BaseModel):
    """Unknown fields are kept: the bridge may add fields without breaking older connectors."""

    model_config = ConfigDict(extra="allow")


# ---- envelopes ----------------------------------------------------------------------------------------------


class RequestMessage(WireModel):
    id: str
    method: str
    params: dict[str, Any] = Field(default_factory=dict)


class ErrorObject(WireModel):
    code: str
    message: str
    data: Any = None


class ResponseMessage(WireModel):
    id: str | None
    result: Any = None
    error: ErrorObject | None = None


class EventMessage(WireModel):
    event: str
    session: str | None
    data: dict[str, Any] = Field(default_factory=dict)


# ---- shared shapes --------------------------------------------------------------------------------------------


class MessageKey(WireModel):
    """A Baileys message key as plain JSON, including the v7 fields protobuf would drop."""

    remoteJid: str | None = None
    fromMe: bool | None = None
    id: str | None = None
    participant: str | None = None
    remoteJidAlt: str | None = None
    participantAlt: str | None = None
    addressingMode: Literal["pn", "lid"] | None = None


class WAMessage(WireModel):
    key: MessageKey
    message: dict[str, Any] | None = None
    messageTimestamp: int | str | None = None
    pushName: str | None = None
    messageStubType: int | str | None = None
    messageStubParameters: list[Any] | None = None
    status: int | None = None
    """``proto.WebMessageInfo.Status`` of a message the account sent: Baileys folds a receipt that arrives while its
    own upsert of the sent message is still buffered into that upsert, instead of a ``messages.update``."""


class Me(WireModel):
    id: str
    lid: str | None = None
    name: str | None = None


# ---- connector -> bridge --------------------------------------------------------------------------------------


class SessionConfig(WireModel):
    browser: tuple[str, str, str] | None = None
    version: tuple[int, int, int] | None = None
    connectTimeoutMs: int | None = Field(default=None, gt=0)
    keepAliveIntervalMs: int | None = Field(default=None, gt=0)
    defaultQueryTimeoutMs: int | None = Field(default=None, gt=0)
    qrTimeoutMs: int | None = Field(default=None, gt=0)


class SessionStartParams(WireModel):
    session: str = Session
    creds: dict[str, Any] | None
    config: SessionConfig | None = None


class SessionStartResult(WireModel):
    session: str
    generated_creds: bool


class SessionParams(WireModel):
    session: str = Session


class PairingCodeParams(WireModel):
    session: str = Session
    phone: str = Field(pattern=r"^[0-9]{7,15}$")
    code: str | None = Field(default=None, min_length=8, max_length=8)


class PairingCodeResult(WireModel):
    code: str


class QuotedMessage(WireModel):
    key: MessageKey
    message: dict[str, Any] | None = None


class SendOptions(WireModel):
    messageId: str | None = None
    quoted: QuotedMessage | None = None


class MessageSendParams(WireModel):
    session: str = Session
    to: str = Field(pattern=r"^[^@\s]+@[a-z.]+$")
    content: dict[str, Any]
    options: SendOptions | None = None


class MessageSendResult(WireModel):
    key: MessageKey
    messageTimestamp: int | str | None = None


class PresenceParams(WireModel):
    session: str = Session
    type: Literal["available", "unavailable", "composing", "recording", "paused"]
    to: str | None = None


class ReadParams(WireModel):
    session: str = Session
    keys: list[MessageKey]


class ReceiptsReleaseParams(WireModel):
    session: str = Session
    ids: list[str] = Field(min_length=1)
    """WhatsApp message ids whose messages are durable (or will not be published)."""


class ReceiptsReleaseResult(WireModel):
    released: int
    """How many of the ids had a held receipt (0 once the socket is gone: WhatsApp delivers those again)."""


class PingResult(WireModel):
    pong: bool
    sessions: int
    uptime_ms: int


class SessionInfo(WireModel):
    session: str
    connection: str | None = None
    has_qr: bool = False
    me: Me | None = None
    lastReceivedAt: int | None = None
    """ms since epoch of the last frame received on the socket (stale detection); ``None`` before the first."""
    heldReceipts: int = 0
    """Messages whose delivery receipt waits for ``receipts.release``."""
    bufferHits: int = 0
    """Redelivered messages answered from the decrypted-message buffer since the socket started."""


class SessionListResult(WireModel):
    sessions: list[SessionInfo]


# ---- bridge -> connector requests ------------------------------------------------------------------------------


class KeysGetParams(WireModel):
    session: str = Session
    type: str = Field(min_length=1)
    ids: list[str]


class KeysGetResult(WireModel):
    values: dict[str, Any]


class KeysSetParams(WireModel):
    session: str = Session
    data: dict[str, dict[str, Any]]


class CredsSaveParams(WireModel):
    session: str = Session
    creds: dict[str, Any]


class MessageGetParams(WireModel):
    session: str = Session
    key: MessageKey


class MessageGetResult(WireModel):
    message: dict[str, Any] | None


# ---- events ---------------------------------------------------------------------------------------------------


class BridgeReady(WireModel):
    protocol: int
    bridge_version: str
    baileys_version: str
    node_version: str
    pid: int


class ConnectionUpdate(WireModel):
    connection: Literal["connecting", "open", "close"] | None = None
    qr: str | None = None
    isNewLogin: bool | None = None
    receivedPendingNotifications: bool | None = None
    isOnline: bool | None = None
    statusCode: int | None = None
    reason: str | None = None
    requested: bool | None = None
    credsSaved: bool | None = None
    """On ``close``: ``False`` when the creds the socket last had could not be stored (the store holds older ones)."""
    me: Me | None = None


class MessagesUpsert(WireModel):
    type: Literal["notify", "append"]
    messages: list[WAMessage]


class MessagesUpdate(WireModel):
    updates: list[dict[str, Any]]


class MessageReceiptUpdate(WireModel):
    updates: list[dict[str, Any]]


class LidMappingUpdate(WireModel):
    lid: str
    pn: str


class SessionErrorEvent(WireModel):
    message: str


EVENT_MODELS: dict[str, type[WireModel]] = {
    "bridge.ready": BridgeReady,
    "connection.update": ConnectionUpdate,
    "messages.upsert": MessagesUpsert,
    "messages.update": MessagesUpdate,
    "message-receipt.update": MessageReceiptUpdate,
    "lid-mapping.update": LidMappingUpdate,
    "session.error": SessionErrorEvent,
}
"""Events the connector reads fields of. Others are passed on as plain dicts."""

REQUEST_MODELS: dict[str, type[WireModel]] = {
    "session.start": SessionStartParams,
    "session.stop": SessionParams,
    "session.logout": SessionParams,
    "session.requestPairingCode": PairingCodeParams,
    "message.send": MessageSendParams,
    "presence.send": PresenceParams,
    "read.send": ReadParams,
    "receipts.release": ReceiptsReleaseParams,
    "keys.get": KeysGetParams,
    "keys.set": KeysSetParams,
    "creds.save": CredsSaveParams,
    "message.get": MessageGetParams,
}
"""Params model of every request either side sends (``ping`` and ``session.list`` take none)."""

RESULT_MODELS: dict[str, type[WireModel]] = {
    "ping": PingResult,
    "session.start": SessionStartResult,
    "session.requestPairingCode": PairingCodeResult,
    "session.list": SessionListResult,
    "message.send": MessageSendResult,
    "receipts.release": ReceiptsReleaseResult,
    "keys.get": KeysGetResult,
    "message.get": MessageGetResult,
}
