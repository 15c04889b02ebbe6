"""The connection policy as a table: one row per (close code, situation) and the decision it must give."""

from __future__ import annotations

import pytest

from connector.policy import Action, Decision, on_close

FLAP_MAX = 5
CALM = 1  # closes in the flap window, this one included: far from flapping
FLAPPING = FLAP_MAX + 1

# code, requested, pairing, recent closes → action, reset the unregistered pairing creds (creds saved)
TABLE: list[tuple[int | None, bool, bool, int, Action, bool]] = [
    # closed on purpose (stop, delete, lease lost): nothing more, whatever the code
    (None, True, False, CALM, Action.STOP, False),
    (401, True, False, CALM, Action.STOP, False),
    (515, True, True, FLAPPING, Action.STOP, False),
    # logged out by WhatsApp: wipe, even while pairing or flapping
    (401, False, False, CALM, Action.LOG_OUT, False),
    (403, False, False, CALM, Action.LOG_OUT, False),
    (411, False, False, CALM, Action.LOG_OUT, False),
    (419, False, True, FLAPPING, Action.LOG_OUT, False),
    # another client took the session over
    (440, False, False, CALM, Action.CONFLICT, False),
    (440, False, False, FLAPPING, Action.CONFLICT, False),
    # restart required: at once, unless flapping
    (515, False, False, CALM, Action.RECONNECT_NOW, False),
    (515, False, True, CALM, Action.RECONNECT_NOW, False),  # right after pairing: the creds are registered now
    (515, False, False, FLAPPING, Action.HOLD, False),
    # the QR window ended (408 while pairing): expired, creds reset; 408 on a linked session is a plain drop
    (408, False, True, CALM, Action.PAIRING_EXPIRED, True),
    (408, False, True, FLAPPING, Action.PAIRING_EXPIRED, True),
    (408, False, False, CALM, Action.BACK_OFF, False),
    # anything else backs off; while pairing the unregistered creds are reset first
    (503, False, False, CALM, Action.BACK_OFF, False),
    (428, False, False, CALM, Action.BACK_OFF, False),
    (None, False, False, CALM, Action.BACK_OFF, False),
    (500, False, True, CALM, Action.BACK_OFF, True),
    # flapping: more than FLAP_MAX closes in the window holds the session back
    (503, False, False, FLAP_MAX, Action.BACK_OFF, False),
    (503, False, False, FLAPPING, Action.HOLD, False),
    (503, False, True, FLAPPING, Action.HOLD, True),
]


# the same, when the creds the socket last had could not be stored
UNSAVED: list[tuple[int | None, bool, bool, int, Action, bool]] = [
    (515, False, True, CALM, Action.PAIRING_LOST, True),  # paired on the phone, but the store has the old creds
    (515, False, True, FLAPPING, Action.PAIRING_LOST, True),
    (515, False, False, CALM, Action.RECONNECT_NOW, False),  # a linked session: slightly old creds still log in
    (503, False, False, CALM, Action.BACK_OFF, False),
    (401, False, False, CALM, Action.LOG_OUT, False),
    (None, True, True, CALM, Action.STOP, False),
]


@pytest.mark.parametrize(("code", "requested", "pairing", "recent", "action", "reset"), UNSAVED)
def test_close_policy_when_the_creds_were_not_saved(
    code: int | None, requested: bool, pairing: bool, recent: int, action: Action, reset: bool
) -> None:
    decision = on_close(
        code, requested=requested, pairing=pairing, recent_closes=recent, flap_max=FLAP_MAX, creds_saved=False
    )
    assert decision == Decision(action, reset_pairing=reset)


@pytest.mark.parametrize(("code", "requested", "pairing", "recent", "action", "reset"), TABLE)
def test_close_policy(
    code: int | None, requested: bool, pairing: bool, recent: int, action: Action, reset: bool
) -> None:
    decision = on_close(code, requested=requested, pairing=pairing, recent_closes=recent, flap_max=FLAP_MAX)
    assert decision == Decision(action, reset_pairing=reset)


def test_every_action_is_reachable() -> None:
    assert {row[4] for row in TABLE + UNSAVED} == set(Action)
