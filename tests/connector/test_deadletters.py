"""The dead-letter tool (``wa-relay-dlq``) against moto's SQS and a spool directory: every source listed, shown and
redriven, the filters, dry runs, entries that cannot be put back, and a crash between putting back and taking out.
The inbound function's side (a redriven event is answered at most once) is in ``tests/functions/test_dead_letters.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connector.contracts import REDRIVE_ATTRIBUTE, OutboundReply, reply_id, whatsapp_message_id
from connector.deadletters.entries import (
    DeadLetter,
    Selection,
    parse_duration,
    plan_redrive,
    redrive_dedup_id,
    same_chat,
)
from connector.deadletters.sources import QueueSource
from connector.publish.spool import REJECTED_FILE, Entry, Spool, read_rejected
from connector.resources import INBOUND_QUEUE, SQS_BODY_MAX_BYTES
from connector.session import Readiness
from connector.types import SessionId
from tests.connector.test_outbound import QUICK, FakeSessions, consuming, until
from tests.support.deadletters import (
    Tool,
    dead_letter_by_redrive_policy,
    depth,
    drop_queues,
    envelope,
    make_queues,
    take_all,
    visible,
)

INBOUND, INBOUND_DLQ = "INBOUND_QUEUE_URL", "INBOUND_QUEUE_DLQ_URL"
OUTBOUND, OUTBOUND_DLQ = "OUTBOUND_QUEUE_URL", "OUTBOUND_QUEUE_DLQ_URL"


@pytest.fixture
def sqs(sqs_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=sqs_endpoint)


@pytest.fixture
def urls(sqs: Any) -> Iterator[dict[str, str]]:
    created = make_queues(sqs)
    yield created
    drop_queues(sqs, created)


@pytest.fixture
def tool(sqs_endpoint: str, urls: dict[str, str], tmp_path: Path) -> Tool:
    return Tool(sqs_endpoint, urls, tmp_path / "spool")


def send_dead(sqs: Any, url: str, body: str, group: str, **attributes: str) -> str:
    """A DLQ entry as the relay writes one (message attributes of ``connector.contracts``)."""
    return str(
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=f"d-{time.time_ns()}",
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )["MessageId"]
    )


def strings(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in (message.get("MessageAttributes") or {}).items()}


# ---- the inbound DLQ ----------------------------------------------------------------------------------------------


def test_an_entry_the_redrive_policy_moved_is_listed_shown_and_redriven(
    sqs: Any, urls: dict[str, str], tool: Tool
) -> None:
    # GIVEN an event that failed maxReceiveCount times, so SQS moved it to the DLQ without any attribute of ours
    env = envelope()
    dead_letter_by_redrive_policy(sqs, urls[INBOUND], env.model_dump_json(), env.group_id, env.event_id)

    # WHEN listed
    listed = tool("list", "--json")
    # THEN it has a reason and an origin all the same
    assert listed.code == 0, listed.err
    [entry] = listed.json()
    n = INBOUND_QUEUE.max_receive_count
    assert entry["source"] == "inbound"
    assert (entry["reason"], entry["origin"], entry["receive_count"]) == (f"redrive: {n} receives", "inbound", n)
    assert (entry["session"], entry["chat"], entry["event_id"]) == ("s1", env.chat.jid, env.event_id)
    assert entry["redrivable"] is True
    assert "hello" not in listed.out, "a listing carries no message text"
    assert visible(sqs, urls[INBOUND_DLQ]) == 1, "listing let go of it at once"

    text = tool("list")
    assert entry["id"] in text.out and f"redrive: {n} receives" in text.out and "1 dead letters (inbound 1" in text.out

    shown = tool("show", entry["id"][:12], "--json")
    assert shown.code == 0
    [full] = shown.json()
    assert json.loads(full["body"]) == json.loads(env.model_dump_json())
    assert full["group"] == env.group_id
    assert "hello" in tool("show", entry["id"]).out

    # WHEN redriven
    result = tool("redrive", "--session", "s1")
    # THEN it is on inbound.fifo in its chat's group, marked, under a deduplication id of its own; the DLQ is empty
    assert result.code == 0, result.out + result.err
    assert f"redriven      inbound  {entry['id']} -> inbound.fifo" in result.out
    [copy] = take_all(sqs, urls[INBOUND])
    assert copy["Body"] == env.model_dump_json()
    assert copy["Attributes"]["MessageGroupId"] == env.group_id
    assert copy["Attributes"]["MessageDeduplicationId"] == redrive_dedup_id("inbound", env.event_id, entry["id"])
    assert copy["Attributes"]["MessageDeduplicationId"] != env.event_id, "SQS may still remember the failed one"
    assert strings(copy) == {REDRIVE_ATTRIBUTE: f"inbound:{entry['id']}"}
    assert depth(sqs, urls[INBOUND_DLQ]) == 0
    assert tool("list", "--json").json() == []


def test_a_whole_chat_beyond_one_receive_is_redriven_in_order(sqs: Any, urls: dict[str, str], tool: Tool) -> None:
    # GIVEN 13 dead letters of one chat: SQS shows at most one receive's worth of a group while it is held
    envelopes = [envelope(text=f"m{i}") for i in range(13)]
    for env in envelopes:
        send_dead(sqs, urls[INBOUND_DLQ], env.model_dump_json(), env.group_id, reason="chatbot_unavailable")

    result = tool("redrive", "--chat", "88887770001@lid")

    assert result.code == 0, result.out
    assert result.out.count("-> inbound.fifo") == 13 and "13 redriven" in result.out
    assert [m["Body"] for m in take_all(sqs, urls[INBOUND])] == [e.model_dump_json() for e in envelopes]
    assert depth(sqs, urls[INBOUND_DLQ]) == 0


def test_filters_select_by_session_chat_reason_and_age(sqs: Any, urls: dict[str, str], tool: Tool) -> None:
    hour = 3600.0
    old = envelope(received_at=time.time() - 3 * hour)
    other_chat = envelope(lid_user="88887770002", pn_user="15557770002")
    other_session = envelope(session="s2")
    ids = {}
    for name, env, reason in (("old", old, "chatbot_unavailable"), ("chat", other_chat, ""), ("s2", other_session, "")):
        attributes = {"reason": reason, "origin": "inbound"} if reason else {}
        ids[name] = send_dead(sqs, urls[INBOUND_DLQ], env.model_dump_json(), env.group_id, **attributes)

    def listed(*args: str) -> set[str]:
        result = tool("list", "--queue", "inbound", "--json", *args)
        assert result.code == 0, result.err
        by_id = {v: k for k, v in ids.items()}
        return {by_id[e["id"]] for e in result.json()}

    assert listed() == {"old", "chat", "s2"}
    assert listed("--session", "s1") == {"old", "chat"}
    assert listed("--session", "s1", "--session", "s2") == {"old", "chat", "s2"}
    assert listed("--chat", "15557770001") == {"old", "s2"}, "a bare phone number matches the PN form"
    assert listed("--chat", "88887770002@lid") == {"chat"}
    assert listed("--chat", "+15557770002") == {"chat"}
    assert listed("--older-than", "1h") == {"old"}
    assert listed("--newer-than", "1h") == {"chat", "s2"}
    assert listed("--reason", "chatbot_unavailable") == {"old"}
    assert listed("--reason", "redrive") == {"chat", "s2"}
    assert listed("--session", "s2", "--older-than", "1h") == set()

    result = tool("redrive", "--older-than", "2h")
    assert result.code == 0
    assert [m["Body"] for m in take_all(sqs, urls[INBOUND])] == [old.model_dump_json()]
    assert listed() == {"chat", "s2"}, "what the filter did not select stays"


def test_a_crash_between_putting_back_and_taking_out_puts_back_one_copy(
    sqs: Any, urls: dict[str, str], tool: Tool, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = envelope()
    dead_letter_by_redrive_policy(sqs, urls[INBOUND], env.model_dump_json(), env.group_id, env.event_id)

    async def crash(self: QueueSource, entries: list[DeadLetter]) -> dict[str, str]:
        return {e.id: "killed before the delete" for e in entries}

    # GIVEN a run that sent the copy but could not take the entry out
    with monkeypatch.context() as patch:
        patch.setattr(QueueSource, "take_out", crash)
        first = tool("redrive", "--all")
    assert first.code == 0
    assert "still in inbound" in first.out
    assert depth(sqs, urls[INBOUND_DLQ]) == 1

    # WHEN it is redriven again
    second = tool("redrive", "--all")

    # THEN the second copy has the same deduplication id, so SQS keeps one (after five minutes, the function's
    # idempotency does: tests/functions/test_dead_letters.py)
    assert second.code == 0
    [copy] = take_all(sqs, urls[INBOUND])
    assert copy["Body"] == env.model_dump_json()
    assert depth(sqs, urls[INBOUND_DLQ]) == 0


def test_dry_run_changes_nothing(sqs: Any, urls: dict[str, str], tool: Tool) -> None:
    env = envelope()
    dead_id = send_dead(sqs, urls[INBOUND_DLQ], env.model_dump_json(), env.group_id, reason="chatbot_unavailable")
    tool.spool_dir.mkdir()
    Spool(tool.spool_dir, max_bytes=1 << 20).reject([Entry(env.group_id, env.event_id, env.model_dump_json())])
    rejected = read_rejected(tool.spool_dir)

    result = tool("redrive", "--all", "--dry-run", "--json")

    assert result.code == 0
    report = result.json()
    assert report["dry_run"] is True
    assert {(o["source"], o["status"]) for o in report["outcomes"]} == {
        ("inbound", "would redrive"),
        ("spool", "would redrive"),
    }
    assert depth(sqs, urls[INBOUND]) == 0
    assert visible(sqs, urls[INBOUND_DLQ]) == 1
    assert read_rejected(tool.spool_dir) == rejected
    assert tool("delete", dead_id, "--dry-run").code == 0
    assert visible(sqs, urls[INBOUND_DLQ]) == 1


def test_redrive_wants_ids_a_filter_or_all(tool: Tool) -> None:
    result = tool("redrive")
    assert result.code == 2
    assert "--all" in result.err


def test_an_unknown_id_is_reported(tool: Tool) -> None:
    result = tool("show", "0123456789abcdef")
    assert result.code == 1
    assert "not found: 0123456789abcdef" in result.err


def test_unset_queue_urls_are_found_by_their_default_names(
    sqs_endpoint: str, queue_urls: dict[str, str], tmp_path: Path
) -> None:
    result = Tool(sqs_endpoint, {}, tmp_path)("list", "--queue", "outbound", "--json")
    assert result.code == 0, result.err
    assert isinstance(result.json(), list)


def test_a_missing_queue_is_a_configuration_error(sqs_endpoint: str, tmp_path: Path) -> None:
    urls = {INBOUND: f"{sqs_endpoint}/123456789012/no-such.fifo", INBOUND_DLQ: f"{sqs_endpoint}/123456789012/nope.fifo"}
    result = Tool(sqs_endpoint, urls, tmp_path)("list", "--queue", "inbound")
    assert result.code == 1
    assert "wa-relay-dlq:" in result.err and "Traceback" not in result.err


# ---- the outbound DLQ ---------------------------------------------------------------------------------------------


async def test_an_outbound_dead_letter_round_trip_sends_the_reply_once(
    sqs: Any, sqs_endpoint: str, urls: dict[str, str], tool: Tool
) -> None:
    # GIVEN a reply the connector dead-lettered because its session was unknown
    reply = OutboundReply(
        reply_id=reply_id("ev-dlq", 0), event_id="ev-dlq", session_id="s1", to="88887770001@lid", text="the answer"
    )
    sqs.send_message(
        QueueUrl=urls[OUTBOUND],
        MessageBody=reply.model_dump_json(),
        MessageGroupId="s1:88887770001@lid",
        MessageDeduplicationId=reply.reply_id,
    )
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.UNKNOWN
    async with consuming(urls[OUTBOUND], urls[OUTBOUND_DLQ], sessions, sqs_endpoint):
        await until(lambda: depth(sqs, urls[OUTBOUND]) == 0 and depth(sqs, urls[OUTBOUND_DLQ]) == 1)
    # the stopped consumer's last long poll is still open on the server for up to its wait: let it end empty
    await asyncio.sleep(QUICK.wait_time_s + 0.5)

    [entry] = (await asyncio.to_thread(tool, "list", "--queue", "outbound", "--json")).json()
    assert (entry["reason"], entry["origin"], entry["session"], entry["chat"]) == (
        "session_unknown", "outbound", "s1", "88887770001@lid",
    )  # fmt: skip
    assert (entry["reply_id"], entry["receive_count"]) == (reply.reply_id, 1)

    # WHEN it is redriven, and the session is back
    result = await asyncio.to_thread(tool, "redrive", "--queue", "outbound", "--reason", "session_unknown")
    assert result.code == 0, result.out
    [copy] = sqs.receive_message(
        QueueUrl=urls[OUTBOUND], MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    assert copy["Attributes"]["MessageGroupId"] == "s1:88887770001@lid"
    assert copy["Attributes"]["MessageDeduplicationId"] != reply.reply_id
    sessions.readiness["s1"] = Readiness.READY
    async with consuming(urls[OUTBOUND], urls[OUTBOUND_DLQ], sessions, sqs_endpoint, QUICK) as (_, log, _calls):
        await until(lambda: len(sessions.sent) == 1 and depth(sqs, urls[OUTBOUND]) == 0)
        # THEN it was sent once under the id derived from the reply id; a second copy (the same reply dead-lettered
        # twice, or redriven after a crash) finds the send record and is not sent again
        send_dead(sqs, urls[OUTBOUND_DLQ], reply.model_dump_json(), "s1:88887770001@lid", reason="send_failed")
        again = await asyncio.to_thread(tool, "redrive", "--queue", "outbound", "--all")
        assert again.code == 0 and "redriven" in again.out
        await until(lambda: depth(sqs, urls[OUTBOUND]) == 0)
        assert await log.get_sent(SessionId("s1"), whatsapp_message_id(reply.reply_id)) is not None
    assert [s["message_id"] for s in sessions.sent] == [whatsapp_message_id(reply.reply_id)]


async def test_a_malformed_reply_is_shown_not_redriven_and_can_be_deleted(
    sqs: Any, sqs_endpoint: str, urls: dict[str, str], tool: Tool
) -> None:
    sqs.send_message(
        QueueUrl=urls[OUTBOUND],
        MessageBody='{"type": "outbound.reply"}',
        MessageGroupId="g",
        MessageDeduplicationId="m1",
    )
    async with consuming(urls[OUTBOUND], urls[OUTBOUND_DLQ], FakeSessions(), sqs_endpoint):
        await until(lambda: depth(sqs, urls[OUTBOUND_DLQ]) == 1)

    [entry] = (await asyncio.to_thread(tool, "list", "--json")).json()
    assert (entry["reason"], entry["origin"], entry["redrivable"]) == ("malformed", "outbound", False)
    assert entry["problem"].startswith("malformed: body is not a valid OutboundReply (reply_id: missing")

    result = await asyncio.to_thread(tool, "redrive", "--all")
    assert result.code == 1
    assert f"skipped       outbound {entry['id']}: malformed" in result.out
    assert visible(sqs, urls[OUTBOUND_DLQ]) == 1, "left where it was"

    deleted = await asyncio.to_thread(tool, "delete", entry["id"])
    assert deleted.code == 0 and "1 deleted" in deleted.out
    assert depth(sqs, urls[OUTBOUND_DLQ]) == 0


# ---- the spool's rejected entries ---------------------------------------------------------------------------------


def test_rejected_spool_entries_that_are_valid_now_are_redriven_the_rest_stay(
    sqs: Any, urls: dict[str, str], tool: Tool
) -> None:
    valid = envelope()
    too_big = envelope(text="x" * SQS_BODY_MAX_BYTES)
    tool.spool_dir.mkdir()
    spool = Spool(tool.spool_dir, max_bytes=4 << 20)
    spool.reject(
        [
            Entry(valid.group_id, valid.event_id, valid.model_dump_json()),
            Entry("s1:x", "not-an-envelope", '{"hello": "world"}'),
            Entry(too_big.group_id, too_big.event_id, too_big.model_dump_json()),
        ]
    )
    with open(tool.spool_dir / REJECTED_FILE, "ab") as f:
        f.write(b'{"group": "torn')  # a write a kill interrupted

    listed = tool("list", "--queue", "spool", "--json")
    assert listed.code == 0
    entries = listed.json()
    assert [(e["reason"], e["origin"], e["redrivable"]) for e in entries] == [
        ("rejected by SQS", "spool", True),
        ("rejected by SQS", "spool", False),
        ("rejected by SQS", "spool", True),
        ("rejected by SQS", "spool", False),
    ]
    assert entries[0]["event_id"] == valid.event_id and entries[0]["session"] == "s1"
    assert entries[3]["problem"] == "not a spool entry (a torn or damaged line)"

    result = tool("redrive", "--queue", "spool", "--all", "--json")

    assert result.code == 1, "some could not be put back"
    outcomes = {o["id"]: (o["status"], o["why"]) for o in result.json()["outcomes"]}
    assert outcomes[entries[0]["id"]] == ("redriven", None)
    assert outcomes[entries[1]["id"]][1].startswith("malformed: body is not a valid InboundEnvelope")
    assert outcomes[entries[2]["id"]][0] == "skipped"
    assert "over SQS's limit" in outcomes[entries[2]["id"]][1]
    [copy] = take_all(sqs, urls[INBOUND])
    assert copy["Body"] == valid.model_dump_json()
    assert copy["Attributes"]["MessageDeduplicationId"] == valid.event_id, "never accepted: the publisher's id"
    assert strings(copy) == {REDRIVE_ATTRIBUTE: f"spool:{entries[0]['id']}"}
    remaining = tool("list", "--queue", "spool", "--json").json()
    assert [e["id"] for e in remaining] == [e["id"] for e in entries[1:]]


def test_listing_the_spool_needs_no_aws(tmp_path: Path) -> None:
    env = envelope()
    Spool(tmp_path, max_bytes=1 << 20).reject([Entry(env.group_id, env.event_id, env.model_dump_json())])
    result = Tool("http://127.0.0.1:9", {}, tmp_path)("list", "--queue", "spool", "--json")
    assert result.code == 0, result.err
    assert [e["event_id"] for e in result.json()] == [env.event_id]


# ---- the pieces ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600), ("1w", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "-1h", "1h30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("wanted", "jid", "same"),
    [
        ("15557770001", "15557770001@s.whatsapp.net", True),
        ("+15557770001", "15557770001@s.whatsapp.net", True),
        ("15557770001@s.whatsapp.net", "15557770001:3@s.whatsapp.net", True),
        ("15557770001@lid", "15557770001@s.whatsapp.net", False),
        ("1555777000", "15557770001@s.whatsapp.net", False),
        ("120363000000000001@g.us", "120363000000000001@g.us", True),
    ],
)
def test_chats_match_in_any_form(wanted: str, jid: str, same: bool) -> None:
    assert same_chat(wanted, jid) is same


def test_ids_match_whole_or_by_a_prefix_of_eight() -> None:
    entry = DeadLetter("inbound", "0123456789abcdef", "{}", "x", "inbound")
    assert Selection(ids=frozenset({"01234567"})).matches(entry, 0)
    assert not Selection(ids=frozenset({"0123456"})).matches(entry, 0)
    assert Selection(ids=frozenset({"0123456789abcdef"})).matches(entry, 0)


def test_sqs_limits_are_checked_before_sending() -> None:
    env = envelope()
    base = DeadLetter(
        "inbound", "id1", env.model_dump_json(), "x", "inbound", event_id=env.event_id, group=env.group_id
    )
    assert not isinstance(plan_redrive(base), str)
    bad_char = DeadLetter("inbound", "id1", base.body.replace("hello", "he\x00llo"), "x", "inbound",
                          event_id=env.event_id, group=env.group_id)  # fmt: skip
    assert plan_redrive(bad_char) == "the body holds a character SQS refuses (U+0000)"
    long_group = DeadLetter("inbound", "id1", base.body, "x", "inbound", event_id=env.event_id, group="g" * 129)
    assert plan_redrive(long_group) == "MessageGroupId is not 1 to 128 printable ASCII characters"
    exactly = SQS_BODY_MAX_BYTES - (len(REDRIVE_ATTRIBUTE) + len("String") + len("inbound:id1"))
    fits = DeadLetter("inbound", "id1", "x" * exactly, "x", "inbound", event_id="e", group="g")
    over = DeadLetter("inbound", "id1", "x" * (exactly + 1), "x", "inbound", event_id="e", group="g")
    assert not isinstance(plan_redrive(fits), str)
    assert "over SQS's limit" in str(plan_redrive(over))


def test_the_command_runs_as_a_module_and_as_the_console_script(tmp_path: Path) -> None:
    import subprocess
    import sys
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["wa-relay-dlq"].partition(":")
    assert module == "connector.deadletters.cli" and function == "main"
    done = subprocess.run(
        [sys.executable, "-m", "connector.deadletters", "list", "--queue", "spool"],
        env={"PATH": "/usr/bin:/bin", "SPOOL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "0 dead letters" in done.stdout
