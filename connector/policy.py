"""The connection policy: what to do when a session's socket closes (DESIGN section 7). A pure function, so every
case is one row of a table test (``tests/connector/test_policy.py``).

- A close the connector asked for (stop, delete, lease lost, shutdown): nothing more.
- 401/403/411/419, logged out by WhatsApp: wipe creds, keys and lease; the user must pair again.
- 440, another client took the session over: stop and alert; reconnecting would only take it back and forth.
- Closed while the QR window was open (not 515): the creds were never registered, and a pairing-code request has
  set ``creds.me``, so reconnecting with them would try to *log in* an identity WhatsApp does not know. They are
  reset first; if the close was 408 (the QR refs ran out) the pairing expired and the session stops.
- More than ``flap_max`` closes within the breaker's window: hold the session back (a loop of reconnects is what
  gets accounts banned).
- 515, restart required (right after pairing): reconnect at once from the stored creds; the phone's "linking…" screen
  times out otherwise. But if the pairing's creds never reached the store (the bridge retried ``creds.save`` until the
  socket closed), the stored creds are the unregistered ones: reconnecting would show a fresh QR while the phone
  lists a device that can never log in. The pairing is lost; the session stops with its creds wiped and says so.
- Anything else: reconnect with exponential backoff and jitter.

The flap check comes after logged-out and conflict (those end the session anyway) and before 515, so a server that
answers 515 in a loop is held back like any other flapping session.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

LOGGED_OUT_CODES = frozenset({401, 403, 411, 419})
TIMED_OUT = 408
CONNECTION_REPLACED = 440
RESTART_REQUIRED = 515


class Action(enum.StrEnum):
    STOP = "stop"
    LOG_OUT = "log_out"
    CONFLICT = "conflict"
    PAIRING_EXPIRED = "pairing_expired"
    PAIRING_LOST = "pairing_lost"
    HOLD = "hold"
    RECONNECT_NOW = "reconnect_now"
    BACK_OFF = "back_off"


STOPPED_BECAUSE = {
    Action.PAIRING_EXPIRED: "pairing expired: the QR window ended before pairing; create it again",
    Action.PAIRING_LOST: (
        "paired on the phone, but the new creds could not be stored: remove this device under Linked devices on the "
        "phone, then create the session again"
    ),
}
"""What a session that stops after an unfinished pairing says (``last_error``)."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reset_pairing: bool = False
    """Wipe the unregistered creds of an unfinished pairing before going on (a fresh QR follows)."""


def on_close(
    code: int | None,
    *,
    requested: bool,
    pairing: bool,
    recent_closes: int,
    flap_max: int,
    creds_saved: bool = True,
) -> Decision:
    """The decision for one close.

    ``requested``: the connector closed the socket itself. ``pairing``: the session was in its QR window (state
    ``qr`` or ``pairing_code``). ``recent_closes``: unrequested closes within the flap window, this one included.
    ``creds_saved``: the creds the socket last had reached the store."""
    if requested:
        return Decision(Action.STOP)
    if code in LOGGED_OUT_CODES:
        return Decision(Action.LOG_OUT)
    if code == CONNECTION_REPLACED:
        return Decision(Action.CONFLICT)
    if pairing and code == RESTART_REQUIRED and not creds_saved:
        return Decision(Action.PAIRING_LOST, reset_pairing=True)
    reset = pairing and code != RESTART_REQUIRED
    if reset and code == TIMED_OUT:
        return Decision(Action.PAIRING_EXPIRED, reset_pairing=True)
    if recent_closes > flap_max:
        return Decision(Action.HOLD, reset_pairing=reset)
    if code == RESTART_REQUIRED:
        return Decision(Action.RECONNECT_NOW)
    return Decision(Action.BACK_OFF, reset_pairing=reset)
