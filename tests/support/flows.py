"""Multi-step flows the bridge tests share. The restart on 515 stands in for the connector's close-code policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from connector.sidecar.types import ConnectionUpdate, WAMessage
from connector.types import SessionId
from tests.support.bridge_host import BridgeRun
from tests.support.wasim import Person, WasimClient, new_person


async def restart_after_515(run: BridgeRun, session: SessionId, mark: int) -> ConnectionUpdate:
    """After pairing the server forces a restart (515): start again from the saved creds and wait for ``open``."""
    closed = await run.host.wait_connection(session, lambda u: u.connection == "close", after=mark)
    assert closed.statusCode == 515, closed
    creds = await run.host.store.get_creds(session)
    assert creds is not None and creds.get("me"), "creds with `me` must be saved before the 515 close is emitted"
    mark = run.host.cursor()
    await run.client.start_session(session, creds)
    return await run.host.wait_connection(session, lambda u: u.connection == "open", after=mark)


async def pair_by_qr(
    run: BridgeRun, sim: WasimClient, session: SessionId, who: Person, device: int = 3
) -> ConnectionUpdate:
    mark = run.host.cursor()
    started = await run.client.start_session(session, None)
    assert started.generated_creds
    update = await run.host.wait_connection(session, lambda u: bool(u.qr), after=mark)
    assert update.qr
    await sim.scan_qr(update.qr, who, device=device)
    return await restart_after_515(run, session, mark)


async def linked(
    start_bridge: Callable[..., Awaitable[BridgeRun]], wasim: WasimClient, session: str
) -> tuple[BridgeRun, Person]:
    """A new bridge with one session linked to a new account by QR."""
    run = await start_bridge()
    me = new_person()
    await pair_by_qr(run, wasim, SessionId(session), me)
    return run, me


async def receive_text(
    run: BridgeRun, session: SessionId, text: str, *, after: int = 0, timeout: float = 30.0
) -> tuple[str, WAMessage]:
    """Wait for an upsert whose text is ``text``; returns (upsert type, message)."""

    def has_text(data: Any) -> bool:
        return any(_text(m) == text for m in data.messages)

    upsert = await run.host.wait_for("messages.upsert", session, has_text, after=after, timeout=timeout)
    return upsert.type, next(m for m in upsert.messages if _text(m) == text)


def _text(m: WAMessage) -> str | None:
    msg = m.message or {}
    return msg.get("conversation") or (msg.get("extendedTextMessage") or {}).get("text")
