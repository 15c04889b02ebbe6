"""Every way a socket ends is surfaced to the parent with its code; the bridge itself never reconnects."""

from __future__ import annotations

import asyncio

import pytest

from connector.sidecar.errors import NoSocket, SocketExists
from connector.types import Jid, SessionId
from tests.conftest import StartBridge
from tests.support.flows import pair_by_qr
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("code", "mode", "expected"),
    [
        (515, "stream_error", 515),  # restart required
        (503, "stream_error", 503),  # service unavailable
        (401, "stream_error", 401),  # device removed: logged out
        (440, "stream_error", 440),  # <conflict type="replaced"/>: another client took over
        (None, "drop", 428),  # the TCP connection just vanished: Baileys' connectionClosed
    ],
)
async def test_forced_close_is_reported_with_its_code(
    start_bridge: StartBridge, wasim: WasimClient, code: int | None, mode: str, expected: int
) -> None:
    run = await start_bridge()
    me = new_person()
    session = SessionId(f"close-{expected}")
    await pair_by_qr(run, wasim, session, me)
    mark = run.host.cursor()

    assert await wasim.disconnect(me, code, mode=mode) == 1

    closed = await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)
    assert closed.statusCode == expected
    assert not closed.requested
    # The socket is gone from the bridge: the policy (reconnect or not) is the parent's.
    await asyncio.sleep(0.2)
    assert session not in [s.session for s in (await run.client.list_sessions()).sessions]
    assert not [u for u in run.host.of("connection.update", session)[mark:] if u.connection == "connecting"]


async def test_login_of_a_removed_device_fails_with_401(start_bridge: StartBridge, wasim: WasimClient) -> None:
    run = await start_bridge()
    me = new_person()
    session = SessionId("removed")
    await pair_by_qr(run, wasim, session, me)
    mark = run.host.cursor()
    await wasim.disconnect(me, 401)
    await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)

    mark = run.host.cursor()
    await run.client.start_session(session, await run.host.store.get_creds(session))
    closed = await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)
    assert closed.statusCode == 401


async def test_stop_closes_on_request_without_logging_out(start_bridge: StartBridge, wasim: WasimClient) -> None:
    run = await start_bridge()
    me = new_person()
    session = SessionId("stop")
    await pair_by_qr(run, wasim, session, me)
    with pytest.raises(SocketExists):
        await run.client.start_session(session, await run.host.store.get_creds(session))
    mark = run.host.cursor()

    await run.client.stop_session(session)

    closed = await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)
    assert closed.requested is True
    assert (await run.client.list_sessions()).sessions == []
    with pytest.raises(NoSocket):
        await run.client.stop_session(session)
    with pytest.raises(NoSocket):
        await run.client.send_message(session, Jid("15550000000@s.whatsapp.net"), {"text": "nobody home"})
    # Not logged out: the same creds log in again.
    mark = run.host.cursor()
    await run.client.start_session(session, await run.host.store.get_creds(session))
    await run.host.wait_connection(session, lambda u: u.connection == "open", after=mark)


async def test_logout_ends_the_socket_with_401(start_bridge: StartBridge, wasim: WasimClient) -> None:
    run = await start_bridge()
    me = new_person()
    session = SessionId("logout")
    await pair_by_qr(run, wasim, session, me)
    mark = run.host.cursor()

    await run.client.logout(session)

    closed = await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)
    assert closed.statusCode == 401 and closed.requested is True
