"""The bridge's error answers as exceptions, mapped from their wire ``code`` through one table.

The classes are named after what the bridge means (its sessions are sockets). Those that mean "the session cannot do
that now" also derive from ``SessionNotReady`` (``connector.errors``), so the session manager and the API handle a
refusal the same way whether the manager or the bridge noticed it.
"""

from __future__ import annotations

from typing import Any

from connector.errors import (
    SessionNotOpen,
    SessionNotReady,
    SidecarError,
    SidecarNotConnected,
    SidecarProtocolError,
    SidecarTimeout,
)

__all__ = [
    "RESPONSE_ERRORS",
    "AlreadyPaired",
    "BridgeTimeout",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "NoSocket",
    "PairingNotReady",
    "ParseError",
    "ShuttingDown",
    "SidecarError",
    "SidecarNotConnected",
    "SidecarProtocolError",
    "SidecarResponseError",
    "SidecarTimeout",
    "SocketExists",
    "SocketNotOpen",
    "make_response_error",
]


class SidecarResponseError(SidecarError):
    """The bridge answered a call with an error object."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.data = data


class ParseError(SidecarResponseError):
    code = "parse_error"


class InvalidRequest(SidecarResponseError):
    code = "invalid_request"


class MethodNotFound(SidecarResponseError):
    code = "method_not_found"


class InvalidParams(SidecarResponseError):
    code = "invalid_params"


class NoSocket(SidecarResponseError, SessionNotReady):
    """The bridge runs no socket for the session (wire code ``session_not_found``)."""

    code = "session_not_found"


class SocketExists(SidecarResponseError):
    """``session.start`` for a session whose socket is still running (wire code ``session_exists``)."""

    code = "session_exists"


class SocketNotOpen(SidecarResponseError, SessionNotOpen):
    """The session's socket is not ``open`` (wire code ``not_connected``)."""

    code = "not_connected"


class PairingNotReady(SidecarResponseError, SessionNotReady):
    code = "pairing_not_ready"


class AlreadyPaired(SidecarResponseError, SessionNotReady):
    code = "already_paired"


class BridgeTimeout(SidecarResponseError):
    code = "timeout"


class ShuttingDown(SidecarResponseError):
    code = "shutting_down"


RESPONSE_ERRORS: dict[str, type[SidecarResponseError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        NoSocket,
        SocketExists,
        SocketNotOpen,
        PairingNotReady,
        AlreadyPaired,
        BridgeTimeout,
        ShuttingDown,
    )
}


def make_response_error(error: Any) -> SidecarResponseError:
    """Turn the ``error`` object of a response into the matching exception (unknown codes stay generic)."""
    if not isinstance(error, dict):
        return SidecarResponseError(f"malformed error object: {error!r}"[:200])
    code = str(error.get("code", "internal"))
    message = str(error.get("message", code))
    cls = RESPONSE_ERRORS.get(code, SidecarResponseError)
    return cls(message, code=code, data=error.get("data"))
