"""What a reply for a session can do, from the session's state and flags: a table."""

from __future__ import annotations

import logging

import pytest

from connector.session import Readiness, Session, SessionState, reply_readiness
from connector.types import SessionId

S = SessionState
R = Readiness


@pytest.mark.parametrize(
    ("state", "wiped", "owner", "expected"),
    [
        (S.OPEN, False, None, R.READY),
        (S.STARTING, False, None, R.WAIT),
        (S.QR, False, None, R.WAIT),
        (S.PAIRING_CODE, False, None, R.WAIT),
        (S.QR, True, None, R.WAIT),  # closed during pairing: creds reset, a fresh QR follows
        (S.CONNECTING, False, None, R.WAIT),
        (S.RECONNECTING, False, None, R.WAIT),
        (S.CONFLICT, False, None, R.WAIT),
        (S.STOPPED, False, None, R.WAIT),  # the connector stopping, or a delete that failed
        (S.LOGGED_OUT, True, None, R.WIPED),
        (S.STOPPED, True, None, R.WIPED),  # pairing expired
        (S.STOPPED, False, "other-connector", R.ELSEWHERE),
    ],
)
def test_reply_readiness(state: SessionState, wiped: bool, owner: str | None, expected: Readiness) -> None:
    s = Session(SessionId("s1"), logging.getLogger("test"), state=state, wiped=wiped, owner=owner)
    assert reply_readiness(s) is expected
    assert expected.gone == (expected in (R.UNKNOWN, R.WIPED))


def test_a_held_session_waits() -> None:
    s = Session(SessionId("s1"), logging.getLogger("test"), state=S.RECONNECTING, held_until=2e9)
    assert s.held and reply_readiness(s) is R.WAIT
