"""Pure unit tests of the inbound function's pieces: nothing running, fakes for boto3 clients."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.utils import formatdate
from typing import Any

import pytest
import urllib3
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import ValidationError

from connector.contracts import (
    ChatbotRequest,
    InboundEnvelope,
    OutboundReply,
    OutboundTyping,
    event_id,
    parse_outbound,
    reply_id,
    typing_id,
)
from functions.inbound import queues
from functions.inbound.chatbot import Chatbot, RetryPolicy, backoff_s, retry_after_seconds, sign
from functions.inbound.config import InboundConfig
from functions.inbound.errors import ChatbotUnavailable, InboundConfigError, LidMapError, ReplySendError, ReplyTooLarge
from functions.inbound.lidmap import LidMap
from functions.inbound.logic import skip_reason
from functions.inbound.models import describe_invalid, parse_body
from functions.inbound.queues import ReplyQueue
from tests.functions.conftest import fresh, golden, load, sqs_record

REQUIRED = {
    "CHATBOT_URL": "https://bot.example/chat",
    "CHATBOT_SECRET": "s3cret",
    "OUTBOUND_QUEUE_URL": "https://sqs/out.fifo",
    "INBOUND_QUEUE_DLQ_URL": "https://sqs/in-dlq.fifo",
}


# ---- fixtures are golden -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pn", "lid", "lid-only"])
def test_golden_envelopes_parse_and_carry_their_own_event_id(name: str) -> None:
    envelope = golden(name)
    key = envelope.key
    assert envelope.event_id == event_id(
        envelope.session_id, envelope.canonical_chat, key.fromMe, key.participant, key.id
    )
    assert envelope.model_dump(mode="json") == load(f"inbound.message.{name}.json")


def test_golden_sqs_event_is_a_fifo_record_whose_body_is_the_pn_envelope() -> None:
    # The record's SQS envelope is checked with Powertools' own model (the function itself parses only the body).
    record = SqsRecordModel.model_validate(load("sqs.inbound.fifo.json")["Records"][0])
    assert parse_body(record.body) == golden("pn")
    assert record.attributes.MessageDeduplicationId == golden("pn").event_id
    assert record.attributes.MessageGroupId == "s1:88887770001@lid"


def test_golden_outbound_reply_answers_the_pn_envelope() -> None:
    reply = OutboundReply.model_validate(load("outbound.reply.json"))
    envelope = golden("pn")
    assert reply.reply_id == reply_id(envelope.event_id, 0)
    assert reply.to == envelope.chat.jid
    assert reply.quoted == envelope.key
    assert reply.mark_read == envelope.key
    assert reply.model_dump(mode="json") == load("outbound.reply.json")


def test_a_reply_queued_before_read_receipts_existed_still_parses() -> None:
    """Bodies in flight across a deploy: the old shape is a reply that marks nothing read, with or without ``type``."""
    legacy = load("outbound.reply.legacy.json")
    assert "mark_read" not in legacy
    reply = parse_outbound(json.dumps(legacy))
    assert isinstance(reply, OutboundReply) and reply.mark_read is None
    assert reply == OutboundReply.model_validate(load("outbound.reply.json")).model_copy(update={"mark_read": None})
    untyped = parse_outbound(json.dumps({k: v for k, v in legacy.items() if k != "type"}))
    assert isinstance(untyped, OutboundReply)


def test_golden_typing_message_is_for_the_pn_envelopes_chat() -> None:
    typing = parse_outbound(json.dumps(load("outbound.typing.json")))
    envelope = golden("pn")
    assert isinstance(typing, OutboundTyping)
    assert (typing.event_id, typing.session_id, typing.to, typing.state) == (
        envelope.event_id,
        envelope.session_id,
        envelope.chat.jid,
        "composing",
    )
    assert typing.model_dump(mode="json") == load("outbound.typing.json")


def test_typing_dedup_ids_are_neither_reply_ids_nor_each_other() -> None:
    ev = golden("pn").event_id
    ids = {typing_id(ev, "composing"), typing_id(ev, "paused"), *(reply_id(ev, i) for i in range(20))}
    assert len(ids) == 22
    assert typing_id(ev, "composing") != typing_id("other", "composing")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"type": "outbound.typing", "v": 1, "session_id": "s1", "to": "1@lid", "expires_at": 1}, "event_id"),
        ({"type": "outbound.typing", "v": 1, "event_id": "e", "session_id": "s1", "to": "1@lid"}, "expires_at"),
        ({"type": "outbound.reply", "v": 1, "text": "x"}, "reply_id"),
        ({"type": "outbound.other", "v": 1, "text": "x"}, "type"),
    ],
)
def test_outbound_bodies_are_told_apart_by_type(body: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_outbound(json.dumps(body))
    assert where in [str(part) for part in e.value.errors()[0]["loc"]]


# ---- config --------------------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = InboundConfig.from_env(REQUIRED)
    assert (config.dedup_ttl_s, config.chatbot_timeout_s, config.chatbot_max_attempts) == (86400, 30.0, 3)
    assert (config.outage_budget_s, config.retry_base_s, config.retry_max_s) == (21600, 30, 900)
    assert config.forward_groups is False
    assert config.typing_indicator is True and config.read_receipts is True
    assert config.idempotency_table == "wa-relay-idempotency"
    assert config.lid_map_table == "wa-relay-lid-map"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    "env",
    [
        {"CHATBOT_URL": ""},
        {"CHATBOT_SECRET": " "},
        {"CHATBOT_URL": "ftp://x"},
        {"OUTBOUND_QUEUE_URL": ""},
        {"DEDUP_TTL_S": "10"},
        {"CHATBOT_MAX_ATTEMPTS": "0"},
        {"CHATBOT_TIMEOUT_S": "soon"},
        {"FORWARD_GROUPS": "maybe"},
        {"TYPING_INDICATOR": "sometimes"},
        {"READ_RECEIPTS": "2"},
    ],
)
def test_config_rejects(env: dict[str, str]) -> None:
    with pytest.raises(InboundConfigError):
        InboundConfig.from_env({**REQUIRED, **env})


@pytest.mark.parametrize(("raw", "on"), [("false", False), ("0", False), ("off", False), ("true", True), ("", True)])
def test_typing_and_read_receipts_switches(raw: str, on: bool) -> None:
    config = InboundConfig.from_env({**REQUIRED, "TYPING_INDICATOR": raw, "READ_RECEIPTS": raw})
    assert (config.typing_indicator, config.read_receipts) == (on, on)


# ---- chatbot helpers -----------------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_t_dot_body() -> None:
    body = b'{"event_id":"e"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", body, 1700000000) == f"t=1700000000,v1={expected}"


def test_retry_after_parsing() -> None:
    now = time.time()
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, base_s=0.5, max_s=3.0)
    assert 0.5 <= backoff_s(policy, 1) <= 1.0
    assert 1.0 <= backoff_s(policy, 2) <= 1.5
    assert backoff_s(policy, 10) == 3.0


# ---- filters -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"message.type": "imageMessage", "message.text": None}, None),
        ({"from_me": True}, "own message"),
        ({"chat.jid": "status@broadcast"}, "status broadcast"),
        ({"chat.jid": "1@broadcast"}, "broadcast list"),
        ({"chat.jid": "1@newsletter"}, "newsletter"),
        ({"chat.is_group": True, "chat.jid": "1@g.us"}, "group (FORWARD_GROUPS is off)"),
        ({"message.type": "reactionMessage"}, "reaction"),
        ({"message.type": "protocolMessage"}, "protocol message"),
        ({"message.type": "unknown", "message.text": None}, "no content"),
        ({"message.text": "  "}, "no content"),
    ],
)
def test_skip_reason(changes: dict[str, Any], reason: str | None) -> None:
    assert skip_reason(fresh(golden("pn"), **changes), forward_groups=False) == reason


def test_groups_pass_when_forwarded() -> None:
    group = fresh(golden("pn"), **{"chat.is_group": True, "chat.jid": "1@g.us"})
    assert skip_reason(group, forward_groups=True) is None


def test_describe_invalid_never_includes_the_body() -> None:
    for body in ("not json: secret words", '{"event_id": "secret words"}'):
        with pytest.raises(ValidationError) as caught:
            parse_body(sqs_record(body)["body"])
        assert "secret words" not in describe_invalid(caught.value)
    assert isinstance(golden("pn"), InboundEnvelope)


# ---- queues --------------------------------------------------------------------------------------------------------


class FakeSqs:
    def __init__(self, fail: list[list[dict[str, Any]]] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        failed = self.fail.pop(0) if self.fail else []
        return {"Successful": [], "Failed": failed}


def reply(index: int, text: str = "hi") -> OutboundReply:
    return OutboundReply(reply_id=reply_id("e", index), event_id="e", session_id="s1", to="1@lid", text=text)


def test_replies_are_sent_in_batches_of_ten_with_dedup_and_group() -> None:
    sqs = FakeSqs()
    ReplyQueue(sqs, "url", sleep=lambda s: None).send("s1:1@lid", [reply(i) for i in range(23)])
    assert [len(c) for c in sqs.calls] == [10, 10, 3]
    entries = [e for c in sqs.calls for e in c]
    assert [e["MessageDeduplicationId"] for e in entries] == [reply_id("e", i) for i in range(23)]
    assert {e["MessageGroupId"] for e in entries} == {"s1:1@lid"}


def test_failed_entries_are_retried_and_sender_faults_raise() -> None:
    sqs = FakeSqs(fail=[[{"Id": "1", "SenderFault": False, "Code": "InternalError"}]])
    ReplyQueue(sqs, "url", sleep=lambda s: None).send("g", [reply(0), reply(1)])
    assert [[e["Id"] for e in c] for c in sqs.calls] == [["0", "1"], ["1"]]

    sqs = FakeSqs(fail=[[{"Id": "0", "SenderFault": True, "Code": "InvalidParameterValue"}]])
    with pytest.raises(ReplySendError, match="InvalidParameterValue"):
        ReplyQueue(sqs, "url", sleep=lambda s: None).send("g", [reply(0)])

    always = [[{"Id": "0", "SenderFault": False, "Code": "InternalError"}]] * 10
    with pytest.raises(ReplySendError, match="still failing"):
        ReplyQueue(FakeSqs(fail=always), "url", attempts=3, sleep=lambda s: None).send("g", [reply(0)])


def test_oversized_reply_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues, "SQS_BODY_MAX_BYTES", 500)
    sqs = FakeSqs()
    with pytest.raises(ReplyTooLarge, match="over the SQS limit"):
        ReplyQueue(sqs, "url").send("g", [reply(0), reply(1, "x" * 600)])
    assert sqs.calls == []


# ---- lid map -------------------------------------------------------------------------------------------------------


class FakeDynamo:
    def __init__(self, items: dict[str, dict[str, Any]], unprocessed_rounds: int = 0) -> None:
        self.items = items
        self.requests: list[dict[str, Any]] = []
        self.unprocessed_rounds = unprocessed_rounds

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(RequestItems)
        [(table, request)] = RequestItems.items()
        assert request["ConsistentRead"] is True
        if self.unprocessed_rounds:
            self.unprocessed_rounds -= 1
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        found = [self.items[k["pk"]["S"]] for k in request["Keys"] if k["pk"]["S"] in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


def test_lid_map_reads_consistently_caches_hits_and_retries_unprocessed_keys() -> None:
    ddb = FakeDynamo({"lid#1": {"pk": {"S": "lid#1"}, "pn": {"S": "2@s.whatsapp.net"}}}, unprocessed_rounds=1)
    now = [0.0]
    lid_map = LidMap(ddb, "t", cache_ttl_s=10, clock=lambda: now[0], sleep=lambda s: None)
    assert lid_map.lookup(["lid#1", "pn#9"]) == {"lid#1": "2@s.whatsapp.net"}
    assert len(ddb.requests) == 2
    assert lid_map.lookup(["lid#1"]) == {"lid#1": "2@s.whatsapp.net"}
    assert len(ddb.requests) == 2  # cached
    now[0] = 11.0
    lid_map.lookup(["lid#1"])
    assert len(ddb.requests) == 3  # expired


def test_lid_map_gives_up_on_endless_unprocessed_keys() -> None:
    lid_map = LidMap(FakeDynamo({}, unprocessed_rounds=99), "t", sleep=lambda s: None)
    with pytest.raises(LidMapError):
        lid_map.lookup(["lid#1"])


class _FailingPool:
    """A urllib3 pool whose every request raises ``error``, counting the attempts."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (urllib3.exceptions.NewConnectionError(None, "refused"), 3),  # never reached the bot: ask again now
        (urllib3.exceptions.ConnectTimeoutError(None, "connect timed out"), 3),
        (urllib3.exceptions.ReadTimeoutError(None, "/chat", "read timed out"), 1),  # the bot may still be answering
        (urllib3.exceptions.ProtocolError("connection dropped mid-answer"), 1),
    ],
)
def test_only_calls_that_never_reached_the_bot_are_retried_in_the_invocation(error: Exception, attempts: int) -> None:
    pool = _FailingPool(error)
    bot = Chatbot("http://bot/chat", "s", retry=RetryPolicy(3, 0.0, 0.0), pool=pool, sleep=lambda _s: None)
    request = ChatbotRequest.model_validate(
        {k: v for k, v in golden("pn").model_dump(mode="json").items() if k in ChatbotRequest.model_fields}
    )
    with pytest.raises(ChatbotUnavailable) as raised:
        bot.ask(request, deadline=time.monotonic() + 30)
    assert pool.attempts == attempts
    assert raised.value.maybe_answering is (attempts == 1)


def test_every_aws_call_of_the_function_fits_in_the_reserve_kept_after_the_chatbot() -> None:
    from functions.inbound.logic import AWS_CLIENT_CONFIG, RESERVE_S

    cfg = AWS_CLIENT_CONFIG
    attempts = cfg.retries["total_max_attempts"]
    assert cfg.connect_timeout is not None and cfg.read_timeout is not None
    one_call = attempts * (cfg.connect_timeout + cfg.read_timeout)
    assert one_call < RESERVE_S, "a stalled call (all its attempts) must end before the invocation does"


def test_the_retry_delay_doubles_per_receive_is_capped_and_yields_to_a_longer_retry_after() -> None:
    from functions.inbound.errors import OutOfTime
    from functions.inbound.retries import OutagePolicy, delay_s

    policy = OutagePolicy(base_s=30, max_s=900)
    down = ChatbotUnavailable("503", status=503)
    assert 30 <= delay_s(down, 1, policy) <= 33 and 60 <= delay_s(down, 2, policy) <= 66
    assert 900 <= delay_s(down, 20, policy) <= 990, "capped (plus at most 10 % jitter)"
    assert delay_s(ChatbotUnavailable("429", status=429, retry_after=3600), 1, policy) == 3600
    assert 30 <= delay_s(ChatbotUnavailable("429", status=429, retry_after=5), 1, policy) <= 33, "never sooner"
    assert delay_s(OutOfTime("no time left"), 5, policy) == 0, "nothing failed: at once"
    assert delay_s(ChatbotUnavailable("x", retry_after=10**6), 1, policy) == 12 * 3600, "SQS's limit"


def test_a_call_is_not_started_unless_its_whole_timeout_fits_before_the_deadline() -> None:
    from functions.inbound.errors import OutOfTime

    pool = _FailingPool(urllib3.exceptions.ReadTimeoutError(None, "/chat", "read timed out"))
    policy = RetryPolicy(3, 0.0, 0.0)
    bot = Chatbot("http://bot/chat", "s", timeout_s=10, retry=policy, pool=pool, sleep=lambda _s: None)
    request = ChatbotRequest.model_validate(
        {k: v for k, v in golden("pn").model_dump(mode="json").items() if k in ChatbotRequest.model_fields}
    )
    with pytest.raises(OutOfTime):  # cut short, the call would be abandoned while the bot may still answer it
        bot.ask(request, deadline=time.monotonic() + 9)
    assert pool.attempts == 0
    with pytest.raises(ChatbotUnavailable):
        bot.ask(request, deadline=time.monotonic() + 11)
    assert pool.attempts == 1
