"""Conformance suite of ``SettingsStore``: memory and DynamoDB (on DynamoDB Local) pass the same tests, and
``BotSettings`` validates what goes in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from connector.contracts import BotSettings, normalise_chat
from connector.resources import SETTINGS_TABLE
from connector.store import MemorySettingsStore, SettingsStore
from connector.store.dynamodb import DynamoSettingsStore
from connector.types import SessionId


@pytest.fixture(params=["memory", "dynamodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SettingsStore]:
    if request.param == "memory":
        yield MemorySettingsStore()
        return
    dynamo = DynamoSettingsStore(SETTINGS_TABLE.default_name, request.getfixturevalue("dynamodb_endpoint"), "us-east-1")
    await dynamo.start()
    yield dynamo
    await dynamo.stop()


def session() -> SessionId:
    """Tests share one table: each uses its own session."""
    return SessionId(f"s-{uuid.uuid4().hex[:12]}")


async def test_none_until_put(store: SettingsStore) -> None:
    assert await store.get_settings(session()) is None


async def test_put_get_replace_delete(store: SettingsStore) -> None:
    sid = session()
    first = BotSettings(chats="allowlist", chat_list=["+1 555 123 4567"], groups="on", max_message_age_s=60)
    await store.put_settings(sid, first)
    assert await store.get_settings(sid) == first
    second = BotSettings(chatbot_url="https://bot.example/chat")
    await store.put_settings(sid, second)
    assert await store.get_settings(sid) == second
    assert await store.get_settings(session()) is None
    await store.delete_settings(sid)
    assert await store.get_settings(sid) is None
    await store.delete_settings(sid)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+1 (555) 123-4567", "15551234567@s.whatsapp.net"),
        ("15551234567:3@s.whatsapp.net", "15551234567@s.whatsapp.net"),
        ("123456789012345:0@lid", "123456789012345@lid"),
        (" 120363000000000000@g.us ", "120363000000000000@g.us"),
    ],
)
def test_chats_are_normalised(given: str, stored: str) -> None:
    assert normalise_chat(given) == stored


@pytest.mark.parametrize(
    "bad",
    [
        {"chat_list": ["hello"]},
        {"chat_list": ["x@newsletter"]},
        {"chat_list": ["123"]},
        {"chats": "some"},
        {"groups": "maybe"},
        {"max_message_age_s": -1},
        {"max_message_age_s": 8 * 86400},
        {"chatbot_url": "http://bot.example/chat"},
        {"chatbot_url": "ftp://127.0.0.1/x"},
        {"chatbot_url": "/chat"},
        {"unknown": 1},
    ],
)
def test_invalid_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BotSettings.model_validate(bad)


def test_local_http_chatbot_is_allowed() -> None:
    assert BotSettings(chatbot_url="http://localhost:8081/chat").chatbot_url == "http://localhost:8081/chat"


@pytest.mark.parametrize(
    ("settings", "forms", "answered"),
    [
        (BotSettings(), ("1@lid",), True),
        (
            BotSettings(chats="allowlist", chat_list=["15551234567"]),
            ("9@lid", "15551234567@s.whatsapp.net", None),
            True,
        ),
        (BotSettings(chats="allowlist", chat_list=["9@lid"]), ("9:2@lid", None, None), True),
        (BotSettings(chats="allowlist", chat_list=["15551234567"]), ("9@lid", None, "9@lid"), False),
        (BotSettings(chats="denylist", chat_list=["9@lid"]), ("15551234567@s.whatsapp.net", None, "9@lid"), False),
        (BotSettings(chats="denylist", chat_list=["9@lid"]), ("8@lid",), True),
        (BotSettings(chats="allowlist"), ("8@lid",), False),
    ],
)
def test_chat_lists_match_any_form(settings: BotSettings, forms: tuple[str | None, ...], answered: bool) -> None:
    assert settings.answers_chat(*forms) is answered
