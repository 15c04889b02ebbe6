"""The report: DLQ entries named by their message, problems shown with the log lines and wire events about them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chaos.checks import BotCall, Problem, Sent, judge
from tests.chaos.report import render
from tests.chaos.scenario import Outcome, dlq_entry
from tests.chaos.schedule import build_schedule


def test_dlq_entries_name_their_message_and_origin() -> None:
    inbound = {
        "Body": json.dumps({"event_id": "ev1", "message": {"text": "chaos s0/c1/4"}}),
        "Attributes": {"ApproximateReceiveCount": "5",
                       "DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:123456789012:wa-relay-inbound.fifo"},
    }  # fmt: skip
    assert dlq_entry("inbound", inbound) == {
        "queue": "inbound", "tag": "s0/c1/4", "event_id": "ev1", "receives": "5",
        "attributes": {"origin": "wa-relay-inbound.fifo"},
    }  # fmt: skip
    reply = {"Body": json.dumps({"event_id": "ev2", "text": "ack s0/c0/1"}),
             "MessageAttributes": {"reason": {"StringValue": "malformed", "DataType": "String"}}}  # fmt: skip
    entry = dlq_entry("outbound", reply)
    assert (entry["tag"], entry["attributes"]) == ("s0/c0/1", {"reason": "malformed"})
    assert dlq_entry("inbound", {"Body": "not json"})["tag"] == "?"


def test_a_failed_run_shows_the_seed_the_problem_and_its_log_lines(tmp_path: Path) -> None:
    plan = build_schedule(42, messages=2, sessions=1, contacts=1, duration_s=20)
    (tmp_path / "relay").mkdir()
    (tmp_path / "relay" / "connector.log").write_text("noise\nevent published for ID-2\nmore noise\n")
    out = Outcome(plan, tmp_path, spool_depth=0, settled=False)
    out.sent = [Sent("s0/c0/1", "ID-1", "s0", "1", "2"), Sent("s0/c0/2", "ID-2", "s0", "1", "2")]
    out.calls = [BotCall("s0/c0/1", "ev1", 200, "ok", True, 1.0)]
    out.events = [
        {"seq": 1, "type": "message.receipted", "at": 5, "data": {"id": "ID-2"}},
        {"seq": 2, "type": "message.outgoing", "at": 6, "data": {"id": "R1", "to": "2", "text": "ack s0/c0/1"}},
    ]
    out.dlq = [
        {"queue": "inbound", "tag": "s0/c0/2", "event_id": "ev2", "receives": "5", "attributes": {}},
        {"queue": "outbound", "tag": "s0/c0/1", "event_id": "ev1", "receives": "5", "attributes": {}},
    ]
    verdict = judge(out.sent, out.calls, out.events, pending=set(), states_after_link={}, events_after_link=[],
                    finals={}, not_open=[], spool_depth=0)  # fmt: skip
    assert verdict.problems == [Problem("lost", "s0/c0/2", verdict.problems[0].detail, ("ID-2",))]
    info = dict.fromkeys(("date", "cpu", "cores", "python", "node", "baileys", "commit"), "?")
    text = render(out, verdict, messages=2, tiny=False, info=info)
    assert "--seed 42 --messages 2 --sessions 1 --contacts 1 --duration-s 20" in text
    assert "| messages lost | 1 | 0 | **FAILED** |" in text
    assert "event published for ID-2" in text and "noise" not in text
    assert 'message.receipted {"id":"ID-2"}' in text
    assert "**never delivered: a loss**" in text and "settle phase timed out" in text
    assert "| outbound | s0/c0/1 | ev1 | 5 | - | delivered otherwise (not a loss) |" in text
