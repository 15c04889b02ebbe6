from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from connector.contracts import Account, event_id
from connector.inbound import build_envelope, lid_pairs, unresolved_pns
from connector.sidecar.types import WAMessage
from tests.connector.fakes import wa_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bridge"
ME = Account(pn="15550001111@s.whatsapp.net", lid="99990001111@lid")


def fixture_message(name: str) -> WAMessage:
    data = json.loads((FIXTURES / name).read_text())["data"]
    return WAMessage.model_validate(data["messages"][0])


def build(raw: dict[str, object], upsert: str = "notify", lids: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return build_envelope(
        WAMessage.model_validate(raw),
        session_id="s1",
        me=ME,
        upsert_type=upsert,  # type: ignore[arg-type]
        received_at_ms=1_000_000,
        lids=lids,
    )


def test_pn_chat_from_fixture() -> None:
    env = build_envelope(fixture_message("event.messages.upsert.pn.json"), session_id="s1", me=ME, upsert_type="notify")
    assert env is not None
    assert env.chat.jid == "15557770001@s.whatsapp.net"
    assert (env.chat.pn, env.chat.lid, env.chat.is_group) == ("15557770001@s.whatsapp.net", "88887770001@lid", False)
    assert env.sender.jid == env.chat.jid
    assert env.sender.push_name == "Alice"
    assert (env.message.type, env.message.text, env.message.timestamp) == ("text", "hi from alice (pn)", 1795646775)
    assert env.key.participant is None
    assert env.event_id == event_id("s1", "88887770001@lid", False, None, "3EB0C82F9B7DBB331937")
    assert env.me == ME


def test_lid_chat_from_fixture() -> None:
    env = build_envelope(
        fixture_message("event.messages.upsert.lid.json"), session_id="s1", me=ME, upsert_type="notify"
    )
    assert env is not None
    assert env.chat.jid == "88887770002@lid"  # as received: replies go to the LID chat
    assert (env.chat.pn, env.chat.lid) == ("15557770002@s.whatsapp.net", "88887770002@lid")
    assert env.key.addressingMode == "lid"


def test_pn_and_lid_forms_of_one_message_share_the_event_id() -> None:
    pn_form = build(wa_message("15557770001@s.whatsapp.net", "ID1", alt="88887770001@lid"))
    lid_form = build(wa_message("88887770001@lid", "ID1", alt="15557770001@s.whatsapp.net"), "append")
    assert pn_form is not None and lid_form is not None
    assert pn_form.event_id == lid_form.event_id
    assert pn_form.chat.jid != lid_form.chat.jid
    other = build(wa_message("88887770001@lid", "ID2"))
    assert other is not None and other.event_id != pn_form.event_id


KNOWN = {"15557770001@s.whatsapp.net": "88887770001@lid", "15557770003@s.whatsapp.net": "88887770003@lid"}
"""What the LID map knows (phone number → LID)."""


def test_a_phone_number_form_without_alt_gets_the_lid_forms_event_id_and_group_through_the_lid_map() -> None:
    lid_form = build(wa_message("88887770001@lid", "ID1", alt="15557770001@s.whatsapp.net"))
    bare_pn = wa_message("15557770001@s.whatsapp.net", "ID1")
    unknown = build(bare_pn)
    resolved = build(bare_pn, "append", lids=KNOWN)
    assert lid_form is not None and unknown is not None and resolved is not None
    assert unknown.event_id != lid_form.event_id, "without the LID map the two forms cannot be matched"
    assert resolved.event_id == lid_form.event_id and resolved.group_id == lid_form.group_id
    assert (resolved.chat.jid, resolved.chat.pn, resolved.chat.lid) == (
        "15557770001@s.whatsapp.net",
        "15557770001@s.whatsapp.net",
        "88887770001@lid",
    ), "replies still go to the chat as it was addressed"
    assert unresolved_pns(WAMessage.model_validate(bare_pn)) == ["15557770001@s.whatsapp.net"]
    assert unresolved_pns(WAMessage.model_validate(wa_message("88887770001@lid", "ID1"))) == []


def test_a_group_participant_by_phone_number_gets_the_lid_forms_event_id_through_the_lid_map() -> None:
    group = "120363000000000001@g.us"
    by_lid = build(wa_message(group, "G9", participant="88887770003@lid", participant_alt="15557770003@s.whatsapp.net"))
    by_pn = wa_message(group, "G9", participant="15557770003@s.whatsapp.net")
    resolved = build(by_pn, lids=KNOWN)
    assert by_lid is not None and resolved is not None
    assert resolved.event_id == by_lid.event_id and resolved.group_id == by_lid.group_id == f"s1:{group}"
    assert resolved.sender.lid == "88887770003@lid" and resolved.sender.jid == "15557770003@s.whatsapp.net"
    assert unresolved_pns(WAMessage.model_validate(by_pn)) == ["15557770003@s.whatsapp.net"]


def test_group() -> None:
    env = build(
        wa_message(
            "120363000000000001@g.us",
            "G1",
            participant="88887770003@lid",
            participant_alt="15557770003@s.whatsapp.net",
            message={"extendedTextMessage": {"text": "hi all"}, "messageContextInfo": {}},
        )
    )
    assert env is not None
    assert env.chat.is_group and env.chat.pn is None and env.chat.lid is None
    assert env.sender.jid == "88887770003@lid"
    assert (env.sender.pn, env.sender.lid) == ("15557770003@s.whatsapp.net", "88887770003@lid")
    assert (env.message.type, env.message.text) == ("text", "hi all")
    assert env.event_id == event_id("s1", "120363000000000001@g.us", False, "88887770003@lid", "G1")


def test_from_me() -> None:
    env = build(wa_message("88887770001@lid", "M1", alt="15557770001@s.whatsapp.net", from_me=True), "append")
    assert env is not None
    assert env.from_me and env.upsert_type == "append"
    assert env.sender.jid == ME.lid and (env.sender.pn, env.sender.lid) == (ME.pn, ME.lid)
    pn_env = build(wa_message("15557770001@s.whatsapp.net", "M2", from_me=True))
    assert pn_env is not None and pn_env.sender.jid == ME.pn


def test_decrypt_failure_stub_is_not_published(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "wa_relay.inbound"):
        env = build(wa_message("88887770001@lid", "S1", stub=2, stub_params=["Bad MAC"]))
    assert env is None
    assert "S1" in caplog.text and "Bad MAC" in caplog.text


def test_media_with_caption_and_quote() -> None:
    env = build(
        wa_message(
            "15557770001@s.whatsapp.net",
            "IMG1",
            message={
                "messageContextInfo": {"deviceListMetadata": {}},
                "imageMessage": {
                    "caption": "look",
                    "mimetype": "image/jpeg",
                    "contextInfo": {"stanzaId": "Q1", "quotedMessage": {"conversation": "earlier"}},
                },
            },
            ts="1795646776",
        )
    )
    assert env is not None
    assert (env.message.type, env.message.text, env.message.timestamp) == ("imageMessage", "look", 1795646776)
    assert env.message.quoted is not None
    assert (env.message.quoted.id, env.message.quoted.text) == ("Q1", "earlier")


@pytest.mark.parametrize(
    ("message", "mtype", "text"),
    [
        ({"reactionMessage": {"text": "👍", "key": {"id": "X"}}}, "reactionMessage", "👍"),
        ({"protocolMessage": {"type": 0, "key": {"id": "X"}}}, "protocolMessage", None),
        ({"ephemeralMessage": {"message": {"extendedTextMessage": {"text": "vanishing"}}}}, "text", "vanishing"),
        (
            {"senderKeyDistributionMessage": {"groupId": "g"}, "conversation": "with skdm"},
            "text",
            "with skdm",
        ),
    ],
)
def test_message_types(message: dict[str, object], mtype: str, text: str | None) -> None:
    env = build(wa_message("15557770001@s.whatsapp.net", "T", message=message))
    assert env is not None
    assert (env.message.type, env.message.text) == (mtype, text)


def test_lid_pairs_from_keys() -> None:
    msg = WAMessage.model_validate(
        wa_message("120363000000000001@g.us", "G", participant="1@lid", participant_alt="2@s.whatsapp.net")
    )
    assert lid_pairs(msg) == [("1@lid", "2@s.whatsapp.net")]
    msg = WAMessage.model_validate(wa_message("15557770001@s.whatsapp.net", "P", alt="88887770001@lid"))
    assert lid_pairs(msg) == [("88887770001@lid", "15557770001@s.whatsapp.net")]


def test_mentions_are_carried_as_bare_jids() -> None:
    text = {
        "extendedTextMessage": {
            "text": "@15550001111 what do you think?",
            "contextInfo": {"mentionedJid": ["15550001111:5@s.whatsapp.net", "99990001111@lid", "99990001111@lid", 7]},
        }
    }
    env = build(wa_message("120363000000000001@g.us", "ID1", participant="88887770001@lid", message=text))
    assert env is not None
    assert env.message.mentions == ["15550001111@s.whatsapp.net", "99990001111@lid"]
    plain = build(wa_message("120363000000000001@g.us", "ID2", participant="88887770001@lid"))
    assert plain is not None and plain.message.mentions == []
