"""The checks flag a planted loss, duplicate, reorder, new QR and Bad MAC, and pass a clean run (synthetic records,
no processes)."""

from __future__ import annotations

from typing import Any

from tests.chaos.checks import BotCall, Sent, chatbot_retries, judge, resent_same_id

ACCOUNT, CONTACT = "16660700000", "16670700000"


def sent(*tags: str) -> list[Sent]:
    return [Sent(t, f"ID-{t}", t.split("/")[0], ACCOUNT, CONTACT) for t in tags]


def call(
    tag: str, at: float, *, status: int = 200, label: str = "ok", delivered: bool = True, eid: str = ""
) -> BotCall:
    return BotCall(tag, eid or f"ev-{tag}", status, label, delivered, at)


def event(seq: int, type_: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "type": type_, "at": seq, "data": data}


def wire(tags: list[str], *, replies: list[str] | None = None) -> list[dict[str, Any]]:
    """The simulator's events of a clean exchange: each message delivered and receipted, each reply decrypted."""
    events = []
    for i, t in enumerate(tags):
        events.append(event(3 * i + 1, "message.incoming_sent", account=ACCOUNT, id=f"ID-{t}"))
        events.append(event(3 * i + 2, "message.receipted", account=ACCOUNT, id=f"ID-{t}"))
    for i, t in enumerate(tags if replies is None else replies):
        events.append(event(1000 + i, "message.outgoing", account=ACCOUNT, to=CONTACT, id=f"R-{t}", text=f"ack {t}"))
    return events


def verdict(messages: list[Sent], calls: list[BotCall], events: list[dict[str, Any]], **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "pending": set(), "states_after_link": {"s0": ["open"]}, "events_after_link": events, "finals": {},
        "not_open": [], "spool_depth": 0,
    }  # fmt: skip
    args.update(overrides)
    return judge(messages, calls, events, **args)


def failed(v: Any) -> dict[str, int]:
    return {name: count for name, count in v.targets if count}


TAGS = ["s0/c0/1", "s0/c0/2", "s0/c1/1"]


def test_a_clean_run_passes() -> None:
    v = verdict(sent(*TAGS), [call(t, i) for i, t in enumerate(TAGS)], wire(TAGS))
    assert v.passed and not v.problems


def test_a_receipted_message_the_chatbot_never_answered_is_lost() -> None:
    calls = [call("s0/c0/1", 1), call("s0/c0/2", 2, status=503, label="fail503", delivered=True), call("s0/c1/1", 3)]
    v = verdict(sent(*TAGS), calls, wire(TAGS, replies=["s0/c0/1", "s0/c1/1"]))
    assert failed(v) == {"messages lost": 1}
    (p,) = v.problems
    assert p.tag == "s0/c0/2" and "receipted" in p.detail and "fail503" in p.detail and "ID-s0/c0/2" in p.keys


def test_a_message_still_held_or_never_delivered_is_lost_too() -> None:
    events = [e for e in wire(TAGS[:1]) if e["type"] != "message.receipted"]
    v = verdict(sent(*TAGS), [], events, pending={"ID-s0/c0/1"})
    details = {p.tag: p.detail for p in v.problems if p.check == "lost"}
    assert "still held" in details["s0/c0/1"] and "never delivered" in details["s0/c1/1"]


def test_an_answer_the_caller_never_read_does_not_count() -> None:
    calls = [call("s0/c0/1", 1, label="stall", delivered=False)]
    v = verdict(sent("s0/c0/1"), calls, wire(["s0/c0/1"], replies=[]))
    assert failed(v) == {"messages lost": 1}


def test_one_event_answered_twice_is_a_duplicate_but_a_retry_after_a_failure_is_not() -> None:
    calls = [call(t, i) for i, t in enumerate(TAGS)]
    calls.insert(1, call("s0/c0/1", 0.5, status=500, label="fail500"))
    calls.insert(1, call("s0/c0/1", 0.4, label="stall", delivered=False))
    assert verdict(sent(*TAGS), calls, wire(TAGS)).passed
    assert chatbot_retries(calls) == {"fail500": 1, "stall": 1}
    v = verdict(sent(*TAGS), [*calls, call("s0/c1/1", 9)], wire(TAGS))
    assert failed(v) == {"chatbot duplicates": 1}
    assert "answered 2 times" in v.problems[0].detail


def test_one_message_under_two_event_ids_is_a_duplicate() -> None:
    calls = [*(call(t, i) for i, t in enumerate(TAGS)), call("s0/c1/1", 5, eid="ev-other-form")]
    v = verdict(sent(*TAGS), calls, wire(TAGS))
    assert failed(v) == {"chatbot duplicates": 1}
    assert "2 event ids" in v.problems[0].detail


def test_a_reply_under_a_second_id_is_a_duplicate_one_the_phone_drops_by_its_id_is_not() -> None:
    calls = [call(t, i) for i, t in enumerate(TAGS)]
    again = event(2000, "message.duplicate", account=ACCOUNT, to=CONTACT, id="R-s0/c0/2", count=2)
    assert verdict(sent(*TAGS), calls, [*wire(TAGS), again]).passed
    assert resent_same_id([*wire(TAGS), again]) == 1
    other_id = event(2001, "message.outgoing", account=ACCOUNT, to=CONTACT, id="R2", text="ack s0/c1/1")
    assert failed(verdict(sent(*TAGS), calls, [*wire(TAGS), other_id])) == {"reply duplicates": 1}


def test_a_missing_reply_is_lost_unless_the_answer_was_garbage() -> None:
    calls = [call("s0/c0/1", 1), call("s0/c0/2", 2, label="garbage"), call("s0/c1/1", 3)]
    assert verdict(sent(*TAGS), calls, wire(TAGS, replies=["s0/c0/1", "s0/c1/1"])).passed
    v = verdict(sent(*TAGS), calls, wire(TAGS, replies=["s0/c0/1"]))
    assert failed(v) == {"replies lost": 1} and v.problems[0].tag == "s0/c1/1"


def test_a_chat_answered_out_of_order_is_flagged_per_chat() -> None:
    tags = ["s0/c0/1", "s0/c0/2", "s0/c0/3", "s0/c1/1"]
    calls = [call("s0/c1/1", 0), call("s0/c0/2", 1), call("s0/c0/1", 2), call("s0/c0/3", 3)]
    v = verdict(sent(*tags), calls, wire(tags))
    assert failed(v) == {"out of order": 1}
    assert v.problems[0].tag == "s0/c0/1" and "s0/c0/2" in v.problems[0].detail


def test_order_follows_the_first_answer_not_later_retries() -> None:
    calls = [call("s0/c0/1", 1), call("s0/c0/2", 2), call("s0/c0/1", 3, status=503, label="fail503")]
    assert verdict(sent("s0/c0/1", "s0/c0/2"), calls, wire(["s0/c0/1", "s0/c0/2"])).passed


def test_a_new_qr_a_bad_mac_a_closed_session_and_a_full_spool_fail() -> None:
    calls = [call(t, i) for i, t in enumerate(TAGS)]
    pairing = event(3000, "pair.success", phone=ACCOUNT, method="qr")
    refs = event(2999, "qr.refs_sent", conn_id="c9", refs=6)
    undecryptable = event(3001, "message.undecryptable", account=ACCOUNT, to=CONTACT, id="R-x", error="Bad MAC")
    v = verdict(
        sent(*TAGS), calls, [*wire(TAGS), refs, pairing, undecryptable],
        states_after_link={"s0": ["open", "reconnecting", "qr"]},
        finals={"s0/c0/final": "the final reply never decrypted on the contact's phone"},
        not_open=["s0"], spool_depth=3,
    )  # fmt: skip
    assert failed(v) == {"new QR": 3, "Bad MAC": 2, "sessions not open at the end": 1, "spool depth at the end": 3}
