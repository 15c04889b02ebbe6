"""The LID map store on DynamoDB (DESIGN section 4): PN ↔ LID pairs in the LID map table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.contracts import jid_user, lid_map_key_for_lid, lid_map_key_for_pn
from connector.resources import LID_MAP_TABLE
from connector.store.abstract import LidMapStore
from connector.store.dynamodb.base import DynamoComponent, WriteRequest


class DynamoLidMapStore(DynamoComponent, LidMapStore):
    """Two items per pair (``lid#<user>`` → ``pn``, ``pn#<user>`` → ``lid``; keys from ``connector.contracts``, which
    the inbound function reads too). Every call writes what it is given (duplicates within the call once): the
    connector's LID feed keeps the one cache of pairs already written, and a second one here would only repeat it."""

    default_table = LID_MAP_TABLE.default_name

    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        unique = dict.fromkeys((f"{jid_user(lid)}@lid", f"{jid_user(pn)}@s.whatsapp.net") for lid, pn in pairs)
        writes: list[WriteRequest] = []
        for lid, pn in unique:
            for pk, attr, value in ((lid_map_key_for_lid(lid), "pn", pn), (lid_map_key_for_pn(pn), "lid", lid)):
                key = {"pk": {"S": pk}}
                writes.append((key, {"PutRequest": {"Item": {**key, attr: {"S": value}}}}, f"lid map {lid} {pn}"))
        await self._batch_write(writes)

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
