"""Events whose bot answered ``202``: what a late answer needs to be sent like an immediate one.

The inbound function writes one item when the bot answers ``202`` (``expect``); the late-answer function reads it
(``get``) and marks it answered (``claim``). Decisions:

- **Where.** The idempotency table, under its own key prefix (``wa-late#<event_id>``, beside ``wa-inbound`` and
  ``wa-answer`` items, which it never touches), with the table's TTL attribute at ``DEDUP_TTL_S``: a late answer
  is accepted for as long as the event itself is remembered. It holds the chat as addressed, the message group,
  the contact's message key (to quote it and mark it read) and when the answer becomes stale; never message text.
- **Accept once.** The first late answer for an event is the answer: ``claim`` stores a digest of its replies with a
  conditional write. Posting the same replies again is accepted again (and sends nothing new: the replies keep their
  ids, so SQS and the connector's send records drop the copies), which makes a bot's retry after a timeout or a
  ``503`` safe; different replies afterwards are refused (``409``): a second, different answer to one message
  would read as the bot changing its mind in front of the contact.
- **Not reset by a redelivery.** ``expect`` does not overwrite an item that was already claimed, so an inbound
  retry that asks the bot again (and gets ``202`` again) cannot reopen an answered event.
- **Strict.** Unlike the stored answers (``functions/inbound/answers.py``), a failed write raises: without the item
  the bot's late answer could never be sent, so the inbound record fails and is retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.contracts import InboundEnvelope, RawKey
from connector.resources import IDEMPOTENCY_TABLE
from functions.late.errors import PendingStoreError

KEY_PREFIX = "wa-late"
KEY_ATTR = IDEMPOTENCY_TABLE.hash_key
EXPIRY_ATTR = IDEMPOTENCY_TABLE.ttl_attribute
"""In epoch seconds, as DynamoDB's TTL reads it."""


@dataclass(frozen=True)
class Pending:
    """One event awaiting (or holding) its late answer."""

    event_id: str
    session_id: str
    to: str
    """The chat exactly as it was addressed (``chat.jid``)."""
    group_id: str
    """The chat's ``MessageGroupId``: late replies are ordered with everything else of the chat."""
    key: RawKey
    mark_read: bool
    stale_after: int
    """Epoch seconds after which an answer is not sent (``MAX_MESSAGE_AGE_S`` past the message); 0: never."""
    expires_at: int
    answer_digest: str | None = None
    """Set once a late answer was accepted (``claim``)."""


class PendingAnswers:
    def __init__(self, dynamodb: Any, table: str, *, ttl_s: int) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.ttl_s = ttl_s

    @staticmethod
    def key(event_id: str) -> str:
        return f"{KEY_PREFIX}#{event_id}"

    def expect(self, envelope: InboundEnvelope, *, mark_read: bool, max_age_s: float) -> None:
        """The bot answered ``envelope`` with ``202``: remember what its late answer needs. Raises
        ``PendingStoreError`` when it could not be stored."""
        now = int(time.time())
        stale_after = int(envelope.message.timestamp + max_age_s) if max_age_s else 0
        item = {
            KEY_ATTR: {"S": self.key(envelope.event_id)},
            EXPIRY_ATTR: {"N": str(now + self.ttl_s)},
            "session_id": {"S": envelope.session_id},
            "to": {"S": envelope.chat.jid},
            "group_id": {"S": envelope.group_id},
            "msg_key": {"S": envelope.key.model_dump_json()},
            "mark_read": {"BOOL": mark_read},
            "stale_after": {"N": str(stale_after)},
        }
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#k) OR attribute_not_exists(answer_digest)",
                ExpressionAttributeNames={"#k": KEY_ATTR},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return  # already answered late: a redelivery must not reopen it
            raise PendingStoreError(f"failed to record the pending answer of {envelope.event_id}") from e
        except BotoCoreError as e:
            raise PendingStoreError(f"failed to record the pending answer of {envelope.event_id}") from e

    def get(self, event_id: str) -> Pending | None:
        """The pending record, or ``None`` (never recorded, or expired: an expired item DynamoDB has not deleted yet
        counts as absent)."""
        try:
            response = self._dynamodb.get_item(
                TableName=self.table, Key={KEY_ATTR: {"S": self.key(event_id)}}, ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as e:
            raise PendingStoreError(f"failed to read the pending answer of {event_id}") from e
        item = response.get("Item")
        if not item:
            return None
        expires_at = int(item.get(EXPIRY_ATTR, {}).get("N", "0"))
        if expires_at <= time.time():
            return None
        try:
            return Pending(
                event_id=event_id,
                session_id=item["session_id"]["S"],
                to=item["to"]["S"],
                group_id=item["group_id"]["S"],
                key=RawKey.model_validate_json(item["msg_key"]["S"]),
                mark_read=bool(item["mark_read"]["BOOL"]),
                stale_after=int(item["stale_after"]["N"]),
                expires_at=expires_at,
                answer_digest=item.get("answer_digest", {}).get("S"),
            )
        except (KeyError, ValueError, ValidationError) as e:
            raise PendingStoreError(f"the pending answer of {event_id} is unreadable") from e

    def claim(self, event_id: str, digest: str) -> bool:
        """Mark the event answered by the replies with ``digest``: True when this answer is the event's answer (now,
        or already: the same replies posted again), False when another answer was accepted first or the record is
        gone."""
        try:
            self._dynamodb.update_item(
                TableName=self.table,
                Key={KEY_ATTR: {"S": self.key(event_id)}},
                UpdateExpression="SET answer_digest = :d, answered_at = :now",
                ConditionExpression=(
                    "attribute_exists(#k) AND #exp > :now"
                    " AND (attribute_not_exists(answer_digest) OR answer_digest = :d)"
                ),
                ExpressionAttributeNames={"#k": KEY_ATTR, "#exp": EXPIRY_ATTR},
                ExpressionAttributeValues={":d": {"S": digest}, ":now": {"N": str(int(time.time()))}},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise PendingStoreError(f"failed to claim the pending answer of {event_id}") from e
        except BotoCoreError as e:
            raise PendingStoreError(f"failed to claim the pending answer of {event_id}") from e
        return True
