"""The reply log on DynamoDB (DESIGN section 5): what this connector sent, in the idempotency table."""

from __future__ import annotations

import time
import zlib
from typing import Any

from connector.errors import StoreError
from connector.resources import IDEMPOTENCY_TABLE
from connector.store.abstract import SENT_MESSAGE_ID_MAX, ReplyLog, SentReply, decode_content, encode_content
from connector.store.dynamodb.base import DynamoComponent
from connector.store.dynamodb.codec import Item
from connector.types import SessionId


class DynamoReplyLog(DynamoComponent, ReplyLog):
    """One item per sent message: ``id`` = ``send#<session>#<WhatsApp message id>`` (session ids cannot contain
    ``#``), ``to``, ``content`` (B: the zlib-compressed JSON of the message, when kept), ``reply_id`` and ``request``
    (when set) and the TTL attribute. Written with one ``PutItem`` per send; read with one consistent ``GetItem``.

    The content is always compressed: a reply of a few hundred bytes costs one write unit either way, and a long
    one (a write unit per KB) shrinks severalfold. DynamoDB deletes expired items lazily (within days), so an
    expired record reads as absent."""

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
    def _key(session: str, message_id: str) -> Item:
        return {IDEMPOTENCY_TABLE.hash_key: {"S": f"send#{session}#{message_id}"}}

    async def get_sent(self, session: SessionId, message_id: str) -> SentReply | None:
        if not 0 < len(message_id) <= SENT_MESSAGE_ID_MAX:
            return None
        what = f"the send record of {message_id} of {session}"
        item = await self._get_item(self._key(session, message_id), what)
        if item is None or float(item.get(self.ttl_attribute, {}).get("N", "0")) <= time.time():
            return None
        try:
            raw = item.get("content", {}).get("B")
            return SentReply(
                session=session,
                message_id=message_id,
                to=item["to"]["S"],
                content=decode_content(zlib.decompress(raw)) if raw is not None else None,
                reply_id=item.get("reply_id", {}).get("S"),
                request=item.get("request", {}).get("S"),
            )
        except (KeyError, ValueError, zlib.error) as e:
            raise StoreError(f"failed to read {what}: {e}") from e

    async def record_sent(self, sent: SentReply) -> None:
        item: Item = {
            **self._key(sent.session, sent.message_id),
            "to": {"S": sent.to},
            self.ttl_attribute: {"N": str(int(time.time() + self.ttl_s))},
        }
        if sent.content is not None:
            item["content"] = {"B": zlib.compress(encode_content(sent.content), 6)}
        for name in ("reply_id", "request"):
            value = getattr(sent, name)
            if value is not None:
                item[name] = {"S": value}
        client = self.client
        try:
            await client.put_item(TableName=self.table, Item=item)
        except Exception as e:
            raise StoreError(f"failed to save the send record of {sent.message_id} of {sent.session}") from e
