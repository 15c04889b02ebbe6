"""Decrypt-failure stubs: counted when not published, resolved when their content arrives under the same id, and
unresolved on ``/metrics`` once they waited too long."""

from __future__ import annotations

import pytest

from connector.api.metrics import render_metrics
from connector.stubs import DecryptStubs, is_decrypt_stub
from tests.connector.fakes import OPEN, Harness, wa_message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("stub_type", "counts"), [(2, True), ("2", True), ("CIPHERTEXT", True), (27, False), ("GROUP_CREATE", False)]
)
def test_only_ciphertext_stubs_are_decrypt_failures(stub_type: int | str, counts: bool) -> None:
    assert is_decrypt_stub(stub_type) is counts


def test_a_stub_is_unresolved_after_the_grace_period_until_its_content_arrives() -> None:
    clock = Clock()
    stubs = DecryptStubs(grace_s=60, clock=clock)
    stubs.stub("s1", "A")
    stubs.stub("s1", "A")  # a re-emit of the same stub
    clock.now += 30
    stubs.stub("s1", "B")
    stubs.stub("s2", "A")  # another session's message with the same id
    assert (stubs.seen, stubs.unresolved) == (3, 0)

    clock.now += 31
    assert stubs.unresolved == 1, "A waited 61 s; B and s2's A only 31 s"
    clock.now += 30
    assert stubs.unresolved == 3

    stubs.content("s1", "A")
    stubs.content("s1", "C")  # content without a stub: nothing to resolve
    assert (stubs.resolved, stubs.unresolved) == (1, 2)


def test_only_the_newest_stubs_are_remembered() -> None:
    clock = Clock()
    stubs = DecryptStubs(grace_s=0, limit=2, clock=clock)
    for message_id in "ABC":
        stubs.stub("s1", message_id)
    clock.now += 1
    assert (stubs.seen, stubs.unresolved) == (3, 2)
    stubs.content("s1", "A")  # forgotten: not counted as resolved
    assert stubs.resolved == 0


async def test_ingest_counts_stubs_and_their_late_content_on_metrics(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    harness.manager.ingest.stubs.grace_s = 0
    group_notice = wa_message("120363000000000001@g.us", "N1", stub=27)
    group_notice.pop("message", None)
    await harness.bridge.emit(
        "messages.upsert",
        "s1",
        {
            "type": "notify",
            "messages": [
                wa_message("88887770001@lid", "S1", stub=2),
                wa_message("88887770001@lid", "S2", stub=2),
                group_notice,
            ],
        },
    )
    await harness.bridge.emit(
        "messages.upsert", "s1", {"type": "notify", "messages": [wa_message("88887770001@lid", "S1")]}
    )

    text = render_metrics(harness.manager)
    assert "wa_relay_decrypt_stubs_total 2" in text
    assert "wa_relay_decrypt_stubs_resolved_total 1" in text
    assert "wa_relay_decrypt_stubs_unresolved 1" in text
    assert [e.message.id for e in harness.publisher.envelopes] == ["S1"]  # type: ignore[attr-defined]
