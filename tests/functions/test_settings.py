"""Per-session settings in the inbound function, against DynamoDB Local, moto's SQS and the test chatbot: the
settings item is written as the connector's store writes it, and the handler filters (or re-routes) accordingly."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.contracts import BotSettings, InboundEnvelope, settings_key
from connector.resources import IDEMPOTENCY_TABLE, SETTINGS_TABLE
from functions.inbound.errors import SettingsError
from functions.inbound.ratelimit import RateLimiter
from functions.inbound.settings import DEFAULTS, SessionSettings
from tests.functions.conftest import (
    SECRET,
    Aws,
    LambdaContext,
    Wire,
    counted,
    fresh,
    golden,
    sqs_event,
    sqs_record,
)
from tests.support.chatbot import ChatbotServer

OK: dict[str, list[dict[str, str]]] = {"batchItemFailures": []}
PN = "15551230001@s.whatsapp.net"
LID = "88887770001@lid"
GROUP = {
    "chat": {"jid": "120363000000000001@g.us", "pn": None, "lid": None, "is_group": True},
    "key.remoteJid": "120363000000000001@g.us",
    "key.remoteJidAlt": None,
    "key.participant": LID,
}


def session() -> str:
    """Tests share the settings table: each one uses a session of its own."""
    return f"set-{uuid.uuid4().hex[:10]}"


def put_settings(aws: Aws, session_id: str, **fields: Any) -> None:
    item = {"pk": {"S": settings_key(session_id)}, "settings": {"S": BotSettings(**fields).model_dump_json()}}
    aws.dynamodb.put_item(TableName=SETTINGS_TABLE.default_name, Item=item)


def message(session_id: str, **changes: Any) -> InboundEnvelope:
    """A fresh message from the contact ``PN``/``LID`` (a LID chat that carries its phone number)."""
    base = {"session_id": session_id, "chat.jid": LID, "chat.lid": LID, "chat.pn": PN, "key.remoteJid": LID}
    return fresh(golden("lid"), **{**base, **changes})


def run(handler: Any, lambda_context: LambdaContext, *envelopes: InboundEnvelope) -> dict[str, Any]:
    return handler.lambda_handler(sqs_event(*(sqs_record(e) for e in envelopes)), lambda_context)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("fields", "answered"),
    [
        ({}, True),
        ({"chats": "allowlist", "chat_list": ["+1 555 123 0001"]}, True),  # listed by number, written to as a LID chat
        ({"chats": "allowlist", "chat_list": [LID]}, True),
        ({"chats": "allowlist", "chat_list": ["15559990000"]}, False),
        ({"chats": "allowlist"}, False),
        ({"chats": "denylist", "chat_list": [PN]}, False),
        ({"chats": "denylist", "chat_list": ["15559990000"]}, True),
    ],
)
def test_chat_lists_decide_before_the_bot_and_the_event_id(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext, fields: dict[str, Any], answered: bool
) -> None:
    handler = wire()
    sid = session()
    put_settings(aws, sid, **fields)
    envelope = message(sid)
    assert run(handler, lambda_context, envelope) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == int(answered)
    # A skipped event leaves its event_id unused: a later change of the settings can still let it through.
    assert (aws.idempotency_item(envelope.event_id) is not None) is answered


@pytest.mark.parametrize(
    ("forward_groups", "groups", "answered"),
    [("false", None, False), ("false", "on", True), ("true", None, True), ("true", "off", False)],
)
def test_groups_setting_overrides_forward_groups(
    wire: Wire,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    forward_groups: str,
    groups: str | None,
    answered: bool,
) -> None:
    handler = wire(FORWARD_GROUPS=forward_groups)
    sid = session()
    put_settings(aws, sid, groups=groups)
    envelope = fresh(golden("lid"), session_id=sid, **GROUP)
    assert run(handler, lambda_context, envelope) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == int(answered)


@pytest.mark.parametrize(
    ("mentions", "answered"),
    [
        ([], False),
        (["15559990000@s.whatsapp.net"], False),
        (["99990001111@lid"], True),  # the account by its LID
        (["15550001111:7@s.whatsapp.net"], True),  # or by its phone number, device and all
    ],
)
def test_groups_mentioned_answers_only_messages_that_mention_the_account(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext, mentions: list[str], answered: bool
) -> None:
    handler = wire()
    sid = session()
    put_settings(aws, sid, groups="mentioned")
    me = {"pn": "15550001111@s.whatsapp.net", "lid": "99990001111@lid"}
    envelope = fresh(golden("lid"), session_id=sid, me=me, **{**GROUP, "message.mentions": mentions})
    assert run(handler, lambda_context, envelope) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == int(answered)


def test_a_group_is_listed_by_its_own_jid(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(FORWARD_GROUPS="true")
    sid = session()
    put_settings(aws, sid, chats="allowlist", chat_list=["120363000000000001@g.us"])
    in_group = fresh(golden("lid"), session_id=sid, **GROUP)
    direct = message(sid)
    assert run(handler, lambda_context, in_group, direct) == OK
    assert len(chatbot.calls_for(in_group.event_id)) == 1
    assert chatbot.calls_for(direct.event_id) == []


@pytest.mark.parametrize(
    ("deployment", "session_age", "answered"), [("0", 60, False), ("60", 0, True), ("60", None, False)]
)
def test_max_message_age_overrides_the_deployment(
    wire: Wire,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    deployment: str,
    session_age: int | None,
    answered: bool,
) -> None:
    handler = wire(MAX_MESSAGE_AGE_S=deployment)
    sid = session()
    put_settings(aws, sid, max_message_age_s=session_age)
    envelope = message(sid, **{"message.timestamp": int(time.time()) - 600})
    assert run(handler, lambda_context, envelope) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == int(answered)


def test_a_session_can_have_its_own_chatbot(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    own = ChatbotServer(SECRET)
    own.start()
    try:
        handler = wire()
        sid = session()
        put_settings(aws, sid, chatbot_url=own.url)
        mine, other = message(sid), message(session())
        assert run(handler, lambda_context, mine, other) == OK
        assert [c.event_id for c in own.calls] == [mine.event_id]
        assert own.calls[0].signature_valid, "the deployment's secret signs a session's own chatbot's requests"
        assert [c.event_id for c in chatbot.calls] == [other.event_id]
    finally:
        own.stop()


def test_changes_apply_once_the_cache_expires(aws: Aws) -> None:
    now = [0.0]
    reader = SessionSettings(aws.dynamodb, SETTINGS_TABLE.default_name, cache_ttl_s=30, clock=lambda: now[0])
    sid = session()
    assert reader.get(sid) == DEFAULTS
    put_settings(aws, sid, chats="denylist", chat_list=[PN])
    now[0] = 29.0
    assert reader.get(sid) == DEFAULTS, "cached"
    now[0] = 30.5
    assert reader.get(sid).chats == "denylist"


def test_an_unreadable_settings_table_fails_the_record(aws: Aws) -> None:
    reader = SessionSettings(aws.dynamodb, "wa-relay-no-such-table")
    with pytest.raises(SettingsError) as raised:
        reader.get(session())
    assert isinstance(raised.value.__cause__, ClientError)


# ---- rate limits ----


def test_a_chat_over_its_limit_is_not_answered_and_its_event_id_is_completed(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = wire()
    sid = session()
    put_settings(aws, sid, rate_chat_per_minute=2)
    first, second, third = (message(sid) for _ in range(3))
    other_chat = message(sid, **{"chat.jid": "88887770009@lid", "chat.lid": "88887770009@lid", "chat.pn": None})
    assert run(handler, lambda_context, first, second, third, other_chat) == OK
    answered = {c.event_id for c in chatbot.calls}
    assert answered == {first.event_id, second.event_id, other_chat.event_id}
    # The refused one is done: a redelivery of it is not answered later, once the window has room.
    assert aws.idempotency_item(third.event_id)["status"]["S"] == "COMPLETED"
    assert counted(capsys.readouterr().out, "RateLimited") == 1


def test_the_session_limit_counts_every_chat(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire()
    sid = session()
    put_settings(aws, sid, rate_session_per_hour=1, rate_chat_per_minute=5)
    first = message(sid)
    other_chat = message(sid, **{"chat.jid": "88887770009@lid", "chat.lid": "88887770009@lid", "chat.pn": None})
    assert run(handler, lambda_context, first) == OK
    assert run(handler, lambda_context, other_chat) == OK
    assert [c.event_id for c in chatbot.calls] == [first.event_id]


def test_a_full_limit_counts_nothing_and_windows_roll_over(aws: Aws) -> None:
    now = [1_000_020.0]  # a minute starts; 47 min into its hour, so the hour lasts the whole test
    limiter = RateLimiter(aws.dynamodb, IDEMPOTENCY_TABLE.default_name, clock=lambda: now[0])
    sid = session()
    settings = BotSettings(rate_chat_per_minute=1, rate_chat_per_hour=2)
    assert limiter.take(sid, LID, settings) is None
    assert limiter.take(sid, LID, settings) == "rate limit: 1 per minute and chat"
    now[0] += 60
    assert limiter.take(sid, LID, settings) is None, "the refused message did not use up the hour's second slot"
    now[0] += 60
    assert limiter.take(sid, LID, settings) == "rate limit: 2 per hour and chat"
    assert limiter.take(sid, "88887770009@lid", settings) is None, "another chat has its own counters"
    assert limiter.take(sid, LID, BotSettings()) is None, "no limits: nothing to count"
