"""Errors of the bridge sidecar. Error codes the bridge sends are mapped to classes through one table."""

from __future__ import annotations

from typing import Any

from connector.errors import RelayError


class SidecarError(RelayError):
    """Anything that went wrong talking to the Node bridge."""


class SidecarNotConnected(SidecarError):
    """The bridge process is not running, or its pipe closed before the call completed."""


class SidecarTimeout(SidecarError):
    """The bridge did not answer a call in time."""


class SidecarProtocolError(SidecarError):
    """The bridge spoke a protocol version or shape this connector does not understand."""


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


class SessionNotFound(SidecarResponseError):
    code = "session_not_found"


class SessionExists(SidecarResponseError):
    code = "session_exists"


class SessionNotOpen(SidecarResponseError):
    """The session's socket is not ``open`` (wire code ``not_connected``)."""

    code = "not_connected"


class PairingNotReady(SidecarResponseError):
    code = "pairing_not_ready"


class AlreadyPaired(SidecarResponseError):
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
        SessionNotFound,
        SessionExists,
        SessionNotOpen,
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
