"""What a chaos run asserts, as pure functions of what was recorded (so planted losses, duplicates and reorders can be
checked without running anything: ``tests/chaos/test_checks.py``).

Inputs: the messages the contacts sent (``Sent``), every call the chatbot got (``BotCall``), and the simulator's
events (``{"seq", "type", "at", "data"}`` dicts). A message is identified by its tag (``s0/c1/7``: session, contact,
sequence number within that chat), which travels in its text (``chaos <tag>``) and in the reply (``ack <tag>``).

Definitions:
- answered: the chatbot got a call for the message that it answered 2xx to a caller still waiting (``delivered``).
  A failed call (5xx, a stall the function gave up on) is a retry, never a duplicate.
- lost: sent but never answered, however far it got (receipted by the device, still held by the simulator, or never
  delivered at all); the detail says how far.
- a chatbot duplicate: one ``event_id`` answered twice, or one message answered under two ``event_id`` values.
- a reply is expected for a message whose first answer was a real reply (``ok``); a garbage answer is a permanent
  failure by contract and expects none.
- reply duplicates: one reply reached the contact under two WhatsApp ids, so the contact saw it twice. A reply sent
  again under the id it already had (a crash between the send and its record) is not one: the phone drops it, as
  real phones do (``message.duplicate``); those are counted apart (``resent_same_id``).
- order: per chat, the sequence numbers in the order of their first answer must increase.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connector.contracts import reply_id, whatsapp_message_id
from tests.chaos.chatbot import REPLY_PREFIX

Event = dict[str, Any]


@dataclass(frozen=True)
class Sent:
    tag: str
    wa_id: str
    session: str
    account: str
    """The account's phone (the simulator's name for it)."""
    contact: str
    """The contact's phone."""


@dataclass(frozen=True)
class BotCall:
    tag: str | None
    event_id: str
    status: int
    label: str
    delivered: bool
    at: float

    @property
    def answered(self) -> bool:
        return 200 <= self.status < 300 and self.delivered


@dataclass(frozen=True)
class Problem:
    check: str
    tag: str
    detail: str
    keys: tuple[str, ...] = ()
    """Strings to look for in the logs (WhatsApp ids, event ids, the tag)."""


def chat_of(tag: str) -> str:
    return tag.rpartition("/")[0]


def seq_of(tag: str) -> int | None:
    tail = tag.rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


def first_answers(calls: Iterable[BotCall]) -> dict[str, BotCall]:
    """Per tag, its first answered call."""
    out: dict[str, BotCall] = {}
    for c in sorted(calls, key=lambda c: c.at):
        if c.tag and c.answered and c.tag not in out:
            out[c.tag] = c
    return out


def events_of(events: Iterable[Event], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


# ---- nothing lost ----


def lost(sent: Iterable[Sent], calls: list[BotCall], events: list[Event], pending: set[str]) -> list[Problem]:
    answered = first_answers(calls)
    receipted = {d["id"] for d in events_of(events, "message.receipted")}
    delivered = {d["id"] for d in events_of(events, "message.incoming_sent")}
    problems = []
    for m in sent:
        if m.tag in answered:
            continue
        if m.wa_id in receipted:
            how = "receipted by the device (WhatsApp will not deliver it again), never answered"
        elif m.wa_id in pending:
            how = "still held by the simulator (never receipted), never answered"
        elif m.wa_id in delivered:
            how = "delivered, neither receipted nor held, never answered"
        else:
            how = "never delivered to the device"
        tried = [c for c in calls if c.tag == m.tag]
        if tried:
            labels = ", ".join(sorted({c.label or str(c.status) for c in tried}))
            how += f"; {len(tried)} failed chatbot calls ({labels})"
        problems.append(Problem("lost", m.tag, how, (m.wa_id, *{c.event_id for c in tried})))
    return problems


def reply_keys(event_id: str) -> tuple[str, ...]:
    """The event id, the id of its (one) reply and the WhatsApp id it is sent under: what the logs name."""
    rid = reply_id(event_id, 0)
    return (event_id, rid, whatsapp_message_id(rid))


def replies_missing(calls: list[BotCall], events: list[Event]) -> list[Problem]:
    replies = replies_by_tag(events)
    problems = []
    for tag, call in sorted(first_answers(calls).items()):
        if call.label == "ok" and tag not in replies:
            problems.append(Problem("reply lost", tag, "answered with a reply that never reached the contact",
                                    reply_keys(call.event_id)))  # fmt: skip
    return problems


def replies_by_tag(events: list[Event]) -> dict[str, set[str]]:
    """Replies the contacts decrypted (``message.outgoing``), by tag: the WhatsApp ids they came under."""
    out: dict[str, set[str]] = defaultdict(set)
    for d in events_of(events, "message.outgoing"):
        text = d.get("text") or ""
        if text.startswith(REPLY_PREFIX):
            out[text[len(REPLY_PREFIX) :].strip()].add(d["id"])
    return out


# ---- nothing twice ----


def chatbot_duplicates(calls: list[BotCall]) -> list[Problem]:
    by_event: dict[str, list[BotCall]] = defaultdict(list)
    events_by_tag: dict[str, set[str]] = defaultdict(set)
    for c in calls:
        if c.answered:
            by_event[c.event_id].append(c)
            if c.tag:
                events_by_tag[c.tag].add(c.event_id)
    problems = []
    for event_id, answered in sorted(by_event.items()):
        if len(answered) > 1:
            tag = answered[0].tag or "?"
            labels = ", ".join(c.label or str(c.status) for c in answered)
            problems.append(Problem("chatbot duplicate", tag, f"event {event_id} answered {len(answered)} times "
                                    f"({labels})", (event_id,)))  # fmt: skip
    for tag, ids in sorted(events_by_tag.items()):
        if len(ids) > 1:
            detail = f"answered under {len(ids)} event ids"
            problems.append(Problem("chatbot duplicate", tag, detail, tuple(sorted(ids))))
    return problems


def chatbot_retries(calls: list[BotCall]) -> Counter[str]:
    """Calls that were not answered (the chatbot failed, stalled or the caller gave up), by label: retries."""
    return Counter(c.label or str(c.status) for c in calls if not c.answered)


def resent_same_id(events: list[Event]) -> int:
    """Replies that arrived again under the id the phone already had (and dropped)."""
    return sum(1 for _ in events_of(events, "message.duplicate"))


def reply_duplicates(events: list[Event]) -> list[Problem]:
    problems = []
    for tag, ids in sorted(replies_by_tag(events).items()):
        if len(ids) > 1:
            problems.append(Problem("reply duplicate", tag, f"one reply under {len(ids)} WhatsApp ids", tuple(ids)))
    return problems


# ---- in order ----


def out_of_order(calls: list[BotCall]) -> list[Problem]:
    """Per chat, each answered message whose sequence number is below one answered before it."""
    problems = []
    highest: dict[str, int] = {}
    for tag, call in sorted(first_answers(calls).items(), key=lambda kv: kv[1].at):
        n = seq_of(tag)
        if n is None:
            continue
        chat = chat_of(tag)
        top = highest.get(chat, 0)
        if n < top:
            problems.append(Problem("out of order", tag, f"answered after {chat}/{top}", (call.event_id,)))
        highest[chat] = max(top, n)
    return problems


# ---- sessions and decryption ----


def new_qr(states: dict[str, list[str]], events_after_link: list[Event]) -> list[Problem]:
    """A session that showed a QR again, or any pairing on the simulator (QR refs sent, a pairing), after the
    initial link."""
    problems = [Problem("new QR", sid, "state went to qr after the link", (sid,))
                for sid, seen in sorted(states.items()) if "qr" in seen]  # fmt: skip
    for d in events_of(events_after_link, "qr.refs_sent"):
        problems.append(Problem("new QR", d.get("conn_id", "?"), "the simulator sent QR refs (a registration)", ()))
    for d in events_of(events_after_link, "pair.success"):
        phone = d.get("phone", "?")
        problems.append(Problem("new QR", phone, f"paired again ({d.get('method')})", (phone,)))
    return problems


def undecryptable(events: list[Event], finals: dict[str, str]) -> list[Problem]:
    """Bad MAC both ways: replies a contact could never decrypt, and final exchanges (``finals``: tag → what failed)
    that did not complete."""
    problems = [Problem("Bad MAC", "?", f"{d['to']} could not decrypt {d['id']}: {d.get('error')}", (d["id"],))
                for d in events_of(events, "message.undecryptable")]  # fmt: skip
    problems += [Problem("Bad MAC", tag, what, (tag,)) for tag, what in sorted(finals.items())]
    return problems


@dataclass
class Verdict:
    targets: list[tuple[str, int]] = field(default_factory=list)
    """(name, count): each must be 0."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(count == 0 for _, count in self.targets)

    def add(self, name: str, problems: list[Problem] | int) -> None:
        if isinstance(problems, int):
            self.targets.append((name, problems))
            return
        self.targets.append((name, len(problems)))
        self.problems += problems


def judge(
    sent: list[Sent],
    calls: list[BotCall],
    events: list[Event],
    *,
    pending: set[str],
    states_after_link: dict[str, list[str]],
    events_after_link: list[Event],
    finals: dict[str, str],
    not_open: list[str],
    spool_depth: int,
) -> Verdict:
    v = Verdict()
    v.add("messages lost", lost(sent, calls, events, pending))
    v.add("replies lost", replies_missing(calls, events))
    v.add("chatbot duplicates", chatbot_duplicates(calls))
    v.add("reply duplicates", reply_duplicates(events))
    v.add("out of order", out_of_order(calls))
    v.add("new QR", new_qr(states_after_link, events_after_link))
    v.add("sessions not open at the end", [Problem("not open", sid, "not open at the end", (sid,)) for sid in not_open])
    v.add("Bad MAC", undecryptable(events, finals))
    v.add("spool depth at the end", spool_depth)
    return v
