"""The chatbot's answer to an event, kept until its replies are queued, so a retry does not ask the bot again.

Why: the replies are queued after the bot answered, and the idempotency record is completed after that. When either
step fails (SQS or DynamoDB refusing for a moment), the record fails and SQS delivers it again; without a stored
answer the retry would call the chatbot a second time: twice the LLM cost, and a second answer that may differ from
the first (the replies keep their ids, so only one of them would be sent, but not necessarily the one logged).

Kept in the idempotency table under its own key prefix (``wa-answer#<event_id>``, beside Powertools' ``wa-inbound``
records, which it never touches), with the table's TTL attribute set to ``DEDUP_TTL_S``: the function already has
read and write access there, and the table is KMS-encrypted. It is reply text at rest, so it is written only for
events that have replies and read only on a redelivery (``ApproximateReceiveCount`` > 1).

Both calls are best effort: the answer in hand matters more than storing it. A failed write or an answer larger
than a DynamoDB item can hold is logged and skipped (a retry then asks the bot again); a failed read means asking
the bot again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.contracts import ChatbotReply
from connector.resources import DYNAMODB_ITEM_MAX_BYTES, IDEMPOTENCY_TABLE

logger = Logger(service="wa-relay", child=True)

KEY_PREFIX = "wa-answer"
KEY_ATTR = IDEMPOTENCY_TABLE.hash_key
EXPIRY_ATTR = IDEMPOTENCY_TABLE.ttl_attribute
"""In epoch seconds, as DynamoDB's TTL (and Powertools) read it."""
ITEM_OVERHEAD_BYTES = 1024
"""Room for the key, the attribute names and the expiry within DynamoDB's item limit."""


class AnswerStore:
    def __init__(self, dynamodb: Any, table: str, *, ttl_s: int) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.ttl_s = ttl_s

    @staticmethod
    def key(event_id: str) -> str:
        return f"{KEY_PREFIX}#{event_id}"

    def get(self, event_id: str) -> list[ChatbotReply] | None:
        """The stored answer, or ``None`` (none stored, expired, unreadable)."""
        try:
            response = self._dynamodb.get_item(
                TableName=self.table, Key={KEY_ATTR: {"S": self.key(event_id)}}, ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as e:
            logger.warning("stored answer could not be read; asking the chatbot", extra={"error": str(e)})
            return None
        item = response.get("Item")
        if not item or int(item.get(EXPIRY_ATTR, {}).get("N", "0")) <= time.time():
            return None
        try:
            return [ChatbotReply.model_validate(r) for r in json.loads(item["replies"]["S"])]
        except (KeyError, ValueError, ValidationError) as e:
            logger.warning("stored answer unreadable; asking the chatbot", extra={"error": str(e)})
            return None

    def put(self, event_id: str, replies: list[ChatbotReply]) -> bool:
        """Store the answer; False when it was not stored (too large, or the write failed)."""
        body = json.dumps([r.model_dump() for r in replies], ensure_ascii=False)
        if len(body.encode()) + ITEM_OVERHEAD_BYTES > DYNAMODB_ITEM_MAX_BYTES:
            logger.warning("answer too large to store; a retry would ask the chatbot again",
                           extra={"bytes": len(body.encode())})  # fmt: skip
            return False
        item = {
            KEY_ATTR: {"S": self.key(event_id)},
            EXPIRY_ATTR: {"N": str(int(time.time()) + self.ttl_s)},
            "replies": {"S": body},
        }
        try:
            self._dynamodb.put_item(TableName=self.table, Item=item)
        except (BotoCoreError, ClientError) as e:
            logger.warning("answer not stored; a retry would ask the chatbot again", extra={"error": str(e)})
            return False
        return True
