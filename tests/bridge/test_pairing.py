"""Linking an account through the real bridge and real Baileys against the simulator: QR, pairing code, restart."""

from __future__ import annotations

import pytest

from connector.sidecar.errors import AlreadyPaired
from connector.types import SessionId
from tests.conftest import StartBridge
from tests.support.flows import pair_by_qr, receive_text, restart_after_515
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e


async def test_qr_pairing_links_the_account_and_uploads_prekeys(start_bridge: StartBridge, wasim: WasimClient) -> None:
    run = await start_bridge()
    me = new_person()
    seq = await wasim.last_seq()

    opened = await pair_by_qr(run, wasim, SessionId("qr"), me, device=4)

    assert opened.me is not None
    assert opened.me.id.split(":")[0] == me.phone and opened.me.id.endswith(":4@s.whatsapp.net")
    assert opened.me.lid is not None and opened.me.lid.startswith(me.lid)
    signed = await wasim.wait_event("pair.device_signed", {"phone": me.phone}, after=seq)
    assert signed["data"]["valid"] is True, "Baileys' pair-device-sign signature must verify"
    uploaded = await wasim.wait_event("prekeys.uploaded", {"account": me.phone}, after=seq)
    # The first upload is Baileys' INITIAL_PREKEY_COUNT; every one of them went through keys.set to the host.
    stored = run.host.store.key_ids(SessionId("qr"), "pre-key")
    assert uploaded["data"]["count"] > 0 and len(stored) >= uploaded["data"]["count"]
    creds = await run.host.store.get_creds(SessionId("qr"))
    assert creds is not None and creds["me"]["id"] == opened.me.id and creds.get("account")


async def test_pairing_code_links_the_account(start_bridge: StartBridge, wasim: WasimClient) -> None:
    run = await start_bridge()
    me = new_person()
    session = SessionId("code")
    mark = run.host.cursor()
    await run.client.start_session(session, None)
    await run.host.wait_connection(session, lambda u: bool(u.qr), after=mark)

    code = await run.client.request_pairing_code(session, me.phone)
    assert len(code) == 8 and code.isalnum()
    await wasim.wait_event("pairing_code.hello", {"phone": me.phone})
    await wasim.enter_pairing_code(code, me, device=7)

    opened = await restart_after_515(run, session, mark)
    assert opened.me is not None and opened.me.id == f"{me.phone}:7@s.whatsapp.net"
    with pytest.raises(AlreadyPaired):
        await run.client.request_pairing_code(session, me.phone)


async def test_bridge_restart_logs_in_from_stored_creds_and_keys(start_bridge: StartBridge, wasim: WasimClient) -> None:
    first = await start_bridge()
    me, alice = new_person(), new_person()
    session = SessionId("restart")
    await pair_by_qr(first, wasim, session, me)
    await wasim.add_contact(alice, "Alice")
    mark = first.host.cursor()
    await wasim.send_text(alice, me, "before the crash")
    await receive_text(first, session, "before the crash", after=mark)

    await first.client.kill()  # as a crash would: no goodbye, the host keeps what was durable
    seq = await wasim.last_seq()
    second = await start_bridge(first.host)
    mark = second.host.cursor()
    await second.client.start_session(session, await second.host.store.get_creds(session))
    await second.host.wait_connection(session, lambda u: u.connection == "open", after=mark)
    assert not [u for u in second.host.of("connection.update", session)[mark:] if u.qr], "no QR after a restart"
    login = await wasim.wait_event("handshake", {"phone": me.phone}, after=seq)
    assert login["data"]["kind"] == "login"

    # The Signal session survived in the host's store: the contact's next message decrypts, and so does a reply.
    await wasim.send_text(alice, me, "after the restart")
    await receive_text(second, session, "after the restart", after=mark)
    seq = await wasim.last_seq()
    await second.client.send_message(session, alice.jid, {"text": "still here"})
    out = await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "still here"}, after=seq)
    assert out["data"]["to"].startswith(alice.phone)
