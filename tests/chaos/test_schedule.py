"""The chaos plan is a pure function of the seed and the sizes, and covers every fault family."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.chaos import run
from tests.chaos.schedule import AWS_KINDS, CHATBOT_KINDS, COMPONENTS, PROCESS_KINDS, SERVICES, build_schedule

FULL = {k: v for k, v in run.FULL.items() if k != "settle_s"}
TINY = {k: v for k, v in run.TINY.items() if k != "settle_s"}


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert build_schedule(7, **FULL) == build_schedule(7, **FULL)
    assert build_schedule(7, **FULL) != build_schedule(8, **FULL)
    assert build_schedule(7, **TINY).faults != build_schedule(8, **TINY).faults


@pytest.mark.parametrize("sizes", [FULL, TINY])
def test_every_message_is_sent_once_numbered_in_order_per_chat(sizes: dict[str, float]) -> None:
    plan = build_schedule(3, **sizes)  # type: ignore[arg-type]
    messages = plan.messages
    assert len(messages) == sizes["messages"]
    assert len({m.tag for m in messages}) == len(messages)
    per_chat: dict[tuple[int, int], list[int]] = defaultdict(list)
    for m in messages:
        assert 0 <= m.session < sizes["sessions"] and 0 <= m.contact < sizes["contacts"]
        per_chat[(m.session, m.contact)].append(m.n)
    assert all(ns == list(range(1, len(ns) + 1)) for ns in per_chat.values())
    times = [b.at for b in plan.bursts]
    assert times == sorted(times) and times[0] > 0 and times[-1] <= sizes["duration_s"]


def test_the_tiny_plan_covers_each_family() -> None:
    for seed in range(20):
        faults = build_schedule(seed, **TINY).faults  # type: ignore[arg-type]
        kinds = {f.kind for f in faults}
        assert set(PROCESS_KINDS) <= kinds
        assert {f.component for f in faults if f.kind == "aws"} == set(COMPONENTS)
        assert "chatbot" in kinds


def test_the_full_plan_covers_every_fault_of_every_slot() -> None:
    faults = build_schedule(11, **FULL).faults  # type: ignore[arg-type]
    aws = {(f.component, f.service, f.aws_kind) for f in faults if f.kind == "aws"}
    assert aws == {(c, s, k) for c in COMPONENTS for s in SERVICES for k in AWS_KINDS}
    assert {f.chatbot for f in faults if f.kind == "chatbot"} == set(CHATBOT_KINDS)
    assert {f.anchor for f in faults} == {"time", "burst", "send"}


def test_faults_are_in_the_window_and_anchors_name_their_burst() -> None:
    plan = build_schedule(5, **FULL)  # type: ignore[arg-type]
    assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)
    for f in plan.faults:
        assert 0 < f.at <= plan.duration_s
        if f.anchor != "time":
            assert plan.bursts[f.burst].at == f.at
        if f.kind == "aws":
            assert 2 <= f.duration_s <= 10 and 0 < f.rate <= 1
        if f.kind == "chatbot":
            assert 2 <= f.duration_s <= 8
    assert plan.faults[0].describe()  # every fault can be printed


def test_one_family_alone_for_replaying_a_failure() -> None:
    plan = build_schedule(9, only=frozenset({"restart-connector"}), **TINY)  # type: ignore[arg-type]
    assert len(plan.faults) == len(build_schedule(9, **TINY).faults)  # type: ignore[arg-type]
    assert {f.kind for f in plan.faults} == {"restart-connector"}
    assert plan.bursts == build_schedule(9, **TINY).bursts  # type: ignore[arg-type]
    assert build_schedule(9, only=frozenset({"aws"}), **TINY) == build_schedule(9, only=frozenset({"aws"}), **TINY)  # type: ignore[arg-type]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        build_schedule(1, messages=0, sessions=1, contacts=1, duration_s=10)
    with pytest.raises(ValueError, match="only"):
        build_schedule(1, messages=1, sessions=1, contacts=1, duration_s=10, only=frozenset({"meteor"}))
