"""The connector's one error tree: every error it raises on purpose descends from ``RelayError``.

One name per meaning. The bridge's own error codes (``connector.sidecar.errors``) hang off this tree too: a bridge
answer that means "this session cannot do that now" (no socket, socket not open, pairing not possible) is also a
``SessionNotReady``, so callers catch one class whoever noticed the problem. The HTTP API maps each class to one
status (``connector.api.errors``); nothing here knows about HTTP.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error wa-relay raises on purpose."""


class ConfigError(RelayError):
    """The configuration is missing a value or holds an invalid one."""


# ---- storage ----


class StoreError(RelayError):
    """A store (creds, keys, leases, LID map, reply log) could not read or write durably."""


class CredsConflict(StoreError):
    """The creds were changed by another writer since this store last read or wrote them (optimistic ``version``
    check). The write did not happen; the caller must re-read the creds before writing again."""


class LeaseLost(StoreError):
    """This connector no longer owns the session: its lease expired and was taken, or was released. Every write
    fenced with the old token fails with this, and the session's socket must be closed at once."""


class PublishError(RelayError):
    """An event could not be handed to the queue."""


# ---- sessions ----


class SessionError(RelayError):
    """A request about one session that cannot be carried out."""


class SessionNotFound(SessionError):
    """No session with that id is known here (nor stored)."""


class SessionExists(SessionError):
    """``create`` for a session id that is already known."""


class SessionNotReady(SessionError):
    """The session cannot do that in its current state (a pairing code outside the QR window, a send while the
    socket is down …)."""


class SessionNotOpen(SessionNotReady):
    """The session's socket is not ``open``, so nothing can be sent through it."""


class SessionOwnedElsewhere(SessionNotReady):
    """Another connector holds the session's lease; only it may drive the session (or send its replies). The
    outbound consumer hands such a reply back at once instead of backing off."""


class SessionGone(SessionError):
    """A key or creds write for a session that was deleted, logged out, wiped or lost to another connector: refused,
    so nothing of it is written back after the wipe (the bridge gets an error answer)."""


# ---- sending ----


class IdempotencyKeyReused(RelayError):
    """An API send whose ``Idempotency-Key`` already sent another request (another recipient, text or quote) from
    the same session: refused, since answering with that message would claim that this request was sent."""


# ---- the bridge sidecar (its wire codes map onto these in ``connector.sidecar.errors``) ----


class SidecarError(RelayError):
    """Anything that went wrong talking to the Node bridge."""


class SidecarNotConnected(SidecarError):
    """The bridge process is not running, or its pipe closed before the call completed."""


class SidecarTimeout(SidecarError):
    """The bridge did not answer a call in time."""


class SidecarProtocolError(SidecarError):
    """The bridge spoke a protocol version or shape this connector does not understand."""
