"""The LID map store on DynamoDB (DESIGN section 4): PN ↔ LID pairs in the LID map table."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from connector.contracts import jid_user, lid_map_key_for_lid, lid_map_key_for_pn
from connector.resources import LID_MAP_TABLE
from connector.store.abstract import LidMapStore
from connector.store.dynamodb.base import DynamoComponent, WriteRequest


class DynamoLidMapStore(DynamoComponent, LidMapStore):
    """Two items per pair (``lid#<user>`` → ``pn``, ``pn#<user>`` → ``lid``; keys from ``connector.contracts``, which
    the inbound function reads too). Pairs already written by this process are remembered (LRU), so the per-message
    feed costs no writes in steady state."""

    default_table = LID_MAP_TABLE.default_name

    def __init__(
        self,
        table_name: str | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        remember: int = 10_000,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        super().__init__(
            table_name,
            endpoint_url,
            region,
            session=session,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        self.remember = remember
        self._written: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        fresh = list(dict.fromkeys((f"{jid_user(lid)}@lid", f"{jid_user(pn)}@s.whatsapp.net") for lid, pn in pairs))
        fresh = [p for p in fresh if p not in self._written]
        if not fresh:
            return
        writes: list[WriteRequest] = []
        for lid, pn in fresh:
            for pk, attr, value in ((lid_map_key_for_lid(lid), "pn", pn), (lid_map_key_for_pn(pn), "lid", lid)):
                key = {"pk": {"S": pk}}
                writes.append((key, {"PutRequest": {"Item": {**key, attr: {"S": value}}}}, f"lid map {lid} {pn}"))
        await self._batch_write(writes)
        for pair in fresh:
            self._written[pair] = None
            self._written.move_to_end(pair)
        while len(self._written) > self.remember:
            self._written.popitem(last=False)

    async def pn_for_lids(self, lids: list[str]) -> dict[str, str]:
        return await self._lookup(lids, lid_map_key_for_lid, "pn")

    async def lid_for_pns(self, pns: list[str]) -> dict[str, str]:
        return await self._lookup(pns, lid_map_key_for_pn, "lid")

    async def _lookup(self, jids: Iterable[str], key_for: Any, attr: str) -> dict[str, str]:
        by_pk: dict[str, list[str]] = {}
        for jid in jids:
            by_pk.setdefault(key_for(jid), []).append(jid)
        items = await self._batch_get([{"pk": {"S": pk}} for pk in by_pk], f"{len(by_pk)} LID map keys")
        out: dict[str, str] = {}
        for item in items:
            value = item.get(attr, {}).get("S")
            if value:
                for jid in by_pk[item["pk"]["S"]]:
                    out[jid] = value
        return out
