"""The seeded plan of a chaos run: when which contact sends which message, and which fault is injected when.

Everything here is a pure function of the seed and the sizes, so ``--seed N`` with the same sizes replays the same
plan (the system's own timing still varies; the report prints the plan beside what actually happened).

- Traffic is bursts: each burst is one ``/messages/send-batch`` call of up to ``burst_max`` messages over random
  chats (a chat = one session and one contact), numbered per chat in send order, so the order check has something
  to check. Bursts are spread over the traffic window.
- Faults: every kind appears at least once when there is room (the process faults and one AWS fault per component
  and one chatbot window first, so even the tiny run covers each family), then random ones. Each is placed in its
  own slot of the window with jitter. A fault is anchored to wall time, to a burst ("mid-burst": while that batch is
  arriving) or to the replies of a burst ("mid-send": just after the chatbot answered one of its messages, while
  the replies are going out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PROCESS_KINDS = ("kill-connector", "kill-bridge", "restart-connector")
AWS_KINDS = ("latency", "blackhole", "reset", "throttle", "5xx")
COMPONENTS = ("connector", "function")
SERVICES = ("sqs", "dynamodb")
CHATBOT_KINDS = ("fail500", "fail503", "fail503-retry-after", "stall", "garbage")
ANCHORS = ("time", "burst", "send")
FAMILIES = (*PROCESS_KINDS, "aws", "chatbot")
"""What ``only`` can name: to replay a failure with one family of faults alone."""


@dataclass(frozen=True)
class Msg:
    session: int
    contact: int
    n: int

    @property
    def tag(self) -> str:
        return f"s{self.session}/c{self.contact}/{self.n}"


@dataclass(frozen=True)
class Burst:
    index: int
    at: float
    """Seconds after the traffic starts."""
    messages: tuple[Msg, ...]


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    """One of ``PROCESS_KINDS``, ``"aws"`` or ``"chatbot"``."""
    at: float
    """Planned seconds after the traffic starts (an anchored fault: its burst's planned time)."""
    anchor: str = "time"
    burst: int = -1
    offset_s: float = 0.0
    """After the anchor: the burst's send starting, or the first chatbot answer to one of its messages."""
    duration_s: float = 0.0
    """Window length; for ``kill-connector``/``restart-connector`` how long the connector stays down."""
    component: str = ""
    service: str = ""
    aws_kind: str = ""
    rate: float = 1.0
    """Share of calls a throttle, 5xx or reset fault hits (latency and blackhole hit every call)."""
    latency_s: float = 0.0
    chatbot: str = ""

    def describe(self) -> str:
        when = {
            "time": f"t+{self.at:.1f}s",
            "burst": f"mid-burst {self.burst} +{self.offset_s:.2f}s",
            "send": f"mid-send {self.burst} +{self.offset_s:.2f}s",
        }[self.anchor]
        if self.kind == "aws":
            what = f"aws {self.component}/{self.service} {self.aws_kind}"
            if self.aws_kind == "latency":
                what += f" +{self.latency_s:.1f}s"
            elif self.aws_kind != "blackhole":
                what += f" rate {self.rate:.2f}"
            return f"{what} for {self.duration_s:.1f}s ({when})"
        if self.kind == "chatbot":
            return f"chatbot {self.chatbot} for {self.duration_s:.1f}s ({when})"
        if self.kind == "kill-bridge":
            return f"kill-bridge ({when})"
        return f"{self.kind}, down {self.duration_s:.1f}s ({when})"


@dataclass(frozen=True)
class Schedule:
    seed: int
    sessions: int
    contacts: int
    duration_s: float
    bursts: tuple[Burst, ...]
    faults: tuple[Fault, ...]
    only: frozenset[str] = frozenset(FAMILIES)

    @property
    def messages(self) -> list[Msg]:
        return [m for b in self.bursts for m in b.messages]


def build_schedule(
    seed: int,
    *,
    messages: int,
    sessions: int,
    contacts: int,
    duration_s: float,
    fault_every_s: float = 9.0,
    burst_max: int = 10,
    only: frozenset[str] = frozenset(FAMILIES),
) -> Schedule:
    """``only``: the fault families to plan (``FAMILIES``); as many faults as usual, all of those kinds."""
    if min(messages, sessions, contacts) < 1 or duration_s <= 0:
        raise ValueError("messages, sessions, contacts and duration must be positive")
    if not only or not only <= set(FAMILIES):
        raise ValueError(f"only must name some of {', '.join(FAMILIES)}")
    rng = random.Random(seed)
    bursts = _bursts(rng, messages, sessions, contacts, duration_s, burst_max)
    faults = _faults(rng, bursts, duration_s, fault_every_s, only)
    return Schedule(seed, sessions, contacts, duration_s, bursts, faults, only)


def _bursts(
    rng: random.Random, messages: int, sessions: int, contacts: int, duration_s: float, burst_max: int
) -> tuple[Burst, ...]:
    sizes: list[int] = []
    left = messages
    while left:
        size = min(left, rng.randint(1, max(2, min(burst_max, 2 * sessions * contacts))))
        sizes.append(size)
        left -= size
    # The last burst leaves a tenth of the window for faults to land on its aftermath.
    times = sorted(rng.uniform(0.5, duration_s * 0.9) for _ in sizes)
    counters: dict[tuple[int, int], int] = {}
    bursts = []
    for index, (at, size) in enumerate(zip(times, sizes, strict=True)):
        batch = []
        for _ in range(size):
            chat = (rng.randrange(sessions), rng.randrange(contacts))
            counters[chat] = counters.get(chat, 0) + 1
            batch.append(Msg(chat[0], chat[1], counters[chat]))
        bursts.append(Burst(index, round(at, 3), tuple(batch)))
    return tuple(bursts)


def _families(rng: random.Random) -> list[tuple[str, ...]]:
    """Every fault family once, in the order they are used: process faults, one AWS fault per component, one
    chatbot window, then the rest shuffled."""
    aws = [("aws", c, s, k) for c in COMPONENTS for s in SERVICES for k in AWS_KINDS]
    chatbot = [("chatbot", k) for k in CHATBOT_KINDS]
    rng.shuffle(aws)
    rng.shuffle(chatbot)
    first_aws = [next(a for a in aws if a[1] == c) for c in COMPONENTS]
    rest = [a for a in aws if a not in first_aws] + chatbot[1:]
    rng.shuffle(rest)
    process = [(k,) for k in PROCESS_KINDS]
    rng.shuffle(process)
    return [*process, *first_aws, chatbot[0], *rest]


def _random_family(rng: random.Random, only: frozenset[str]) -> tuple[str, ...]:
    while True:
        roll = rng.random()
        if roll < 0.3:
            family: tuple[str, ...] = (rng.choice(PROCESS_KINDS),)
        elif roll < 0.75:
            family = ("aws", rng.choice(COMPONENTS), rng.choice(SERVICES), rng.choice(AWS_KINDS))
        else:
            family = ("chatbot", rng.choice(CHATBOT_KINDS))
        if family[0] in only:
            return family


def _faults(
    rng: random.Random, bursts: tuple[Burst, ...], duration_s: float, fault_every_s: float, only: frozenset[str]
) -> tuple[Fault, ...]:
    families = [f for f in _families(rng) if f[0] in only]
    count = max(6, round(duration_s / fault_every_s))
    while len(families) < count:
        families.append(_random_family(rng, only))
    families = families[:count]
    # One slot per fault over the window, the families dealt to slots at random.
    span = duration_s * 0.95
    slots = [(i + rng.uniform(0.1, 0.9)) * span / count for i in range(count)]
    rng.shuffle(families)
    faults = []
    for index, (family, at) in enumerate(zip(families, slots, strict=True)):
        anchor = rng.choice(ANCHORS)
        burst, offset = -1, 0.0
        if anchor != "time":
            following = [b for b in bursts if b.at >= at]
            if following:
                chosen = following[0]
                burst, at = chosen.index, chosen.at
                offset = rng.uniform(0.0, 0.3) if anchor == "burst" else rng.uniform(0.0, 0.5)
            else:
                anchor = "time"
        faults.append(_fault(rng, index, family, round(at, 3), anchor, burst, round(offset, 3)))
    return tuple(sorted(faults, key=lambda f: (f.at, f.offset_s, f.index)))


def _fault(
    rng: random.Random, index: int, family: tuple[str, ...], at: float, anchor: str, burst: int, offset: float
) -> Fault:
    common = {"index": index, "at": at, "anchor": anchor, "burst": burst, "offset_s": offset}
    kind = family[0]
    if kind == "aws":
        _, component, service, aws_kind = family
        duration = rng.uniform(2.0, 10.0)
        rate = 1.0 if aws_kind in ("latency", "blackhole") else round(rng.uniform(0.3, 1.0), 2)
        latency = round(rng.uniform(0.5, 3.0), 2) if aws_kind == "latency" else 0.0
        return Fault(
            kind="aws", component=component, service=service, aws_kind=aws_kind, duration_s=round(duration, 2),
            rate=rate, latency_s=latency, **common,
        )  # fmt: skip
    if kind == "chatbot":
        high = 6.0 if family[1] == "stall" else 8.0
        return Fault(kind="chatbot", chatbot=family[1], duration_s=round(rng.uniform(2.0, high), 2), **common)
    down = {"kill-connector": (0.0, 4.0), "restart-connector": (0.0, 2.0), "kill-bridge": (0.0, 0.0)}[kind]
    return Fault(kind=kind, duration_s=round(rng.uniform(*down), 2), **common)
