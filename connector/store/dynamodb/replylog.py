"""The reply log on DynamoDB (DESIGN section 5): which replies were already sent, in the idempotency table."""

from __future__ import annotations

import time
from typing import Any

from connector.errors import StoreError
from connector.resources import IDEMPOTENCY_TABLE
from connector.store.abstract import ReplyLog
from connector.store.dynamodb.base import DynamoComponent
from connector.store.dynamodb.codec import Item


class DynamoReplyLog(DynamoComponent, ReplyLog):
    """Reply-send records: ``id`` = ``reply#<reply_id>``, ``message_id``, and the TTL attribute. DynamoDB deletes
    expired items lazily (within days), so an expired record reads as absent."""

    default_table = IDEMPOTENCY_TABLE.default_name

    def __init__(
        self,
        table_name: str | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        ttl_s: float = 86400.0,
        session: Any = None,
    ) -> None:
        super().__init__(table_name, endpoint_url, region, session=session)
        self.ttl_s = ttl_s
        self.ttl_attribute = IDEMPOTENCY_TABLE.ttl_attribute or "expiration"

    @staticmethod
    def _key(reply_id: str) -> Item:
        return {IDEMPOTENCY_TABLE.hash_key: {"S": f"reply#{reply_id}"}}

    async def sent_message_id(self, reply_id: str) -> str | None:
        item = await self._get_item(self._key(reply_id), f"the send record of reply {reply_id}")
        if item is None or float(item.get(self.ttl_attribute, {}).get("N", "0")) <= time.time():
            return None
        message_id = item.get("message_id", {}).get("S")
        return str(message_id) if message_id else None

    async def record_sent(self, reply_id: str, message_id: str) -> None:
        item = {
            **self._key(reply_id),
            "message_id": {"S": message_id},
            self.ttl_attribute: {"N": str(int(time.time() + self.ttl_s))},
        }
        client = self.client
        try:
            await client.put_item(TableName=self.table, Item=item)
        except Exception as e:
            raise StoreError(f"failed to save the send record of reply {reply_id}") from e
