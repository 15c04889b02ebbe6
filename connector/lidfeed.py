"""The LID feed: every LID↔phone-number pair the connector sees goes to the LID map (DESIGN section 4), so the
inbound function can resolve a LID chat to a phone number and back, and the connector can give a message the same
``event_id`` whichever form it arrived in (``lids_for``).

Sources: ``lid-mapping.update`` events, the alt jids on message keys, ``lid-mapping`` key writes, the account's own
``me`` when a session opens, ``messaging-history.set`` mappings and contacts. Every message of a chat carries the
same pair, so pairs already written by this process are remembered (one bounded cache, here and nowhere else) and
the steady state costs no writes. A pair never changes; a new pair for the same LID or phone number is a different
key, so it is still written. A failed write is logged and forgotten, never raised: the LID map is an aid to the
function, and a key write or a message must not fail because of it. The pair is not remembered then, so the next
message that carries it writes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connector.contracts import jid_user
from connector.inbound import is_lid, is_pn, pn_lid
from connector.lru import Lru
from connector.store.abstract import LidMapStore

log = logging.getLogger("wa_relay.lidfeed")

CACHE_SIZE = 50_000
"""Pairs remembered as written, and LIDs remembered by phone number (about 200 bytes each: 20 MB at most)."""


class LidFeed:
    def __init__(self, store: LidMapStore, *, cache_size: int = CACHE_SIZE) -> None:
        self.store = store
        self._written: Lru[tuple[str, str], None] = Lru(cache_size)
        self._lid_by_pn: Lru[str, str] = Lru(cache_size)

    async def feed(self, pairs: list[tuple[str, str]], source: str) -> None:
        """Write the ``(lid, pn)`` pairs not written before (see the module docstring for failures)."""
        fresh = sorted({pair for pair in pairs if pair not in self._written})
        if not fresh:
            return
        try:
            await self.store.put_pairs(fresh)
        except Exception as e:
            log.warning("LID map write of %d pairs from %s failed: %s", len(fresh), source, e)
            return
        for pair in fresh:
            self._written.put(pair, None)
            self._lid_by_pn.put(pair[1], pair[0])

    async def lids_for(self, pns: list[str]) -> dict[str, str]:
        """The known LIDs of these bare phone-number jids: from pairs seen by this process, else from the LID map
        (a pair another connector or an earlier run wrote). A LID map that cannot be read counts as not knowing:
        the message is still published, under its phone-number form."""
        found = {pn: lid for pn in pns if (lid := self._lid_by_pn.get(pn)) is not None}
        missing = [pn for pn in dict.fromkeys(pns) if pn not in found]
        if missing:
            try:
                stored = await self.store.lid_for_pns(missing)
            except Exception as e:
                log.warning("LID map read of %d numbers failed: %s", len(missing), e)
                stored = {}
            for pn, lid in stored.items():
                self._lid_by_pn.put(pn, lid)
            found |= stored
        return found

    async def feed_key_writes(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Pairs in a ``keys.set`` of Baileys' ``lid-mapping`` type (``<pn>`` → lid user, ``<lid>_reverse`` → pn)."""
        mapping = data.get("lid-mapping")
        if not mapping:
            return
        pairs = []
        for key_id, value in mapping.items():
            if not isinstance(value, str) or not value:
                continue
            if key_id.endswith("_reverse"):
                lid_user, pn_user = key_id.removesuffix("_reverse"), value
            else:
                pn_user, lid_user = key_id, value
            pairs.append((f"{jid_user(lid_user)}@lid", f"{jid_user(pn_user)}@s.whatsapp.net"))
        await self.feed(pairs, "lid-mapping keys")

    async def feed_event(self, event: str, data: Mapping[str, Any]) -> None:
        """Pairs in the events the bridge forwards without a model (history sync, contacts)."""
        pairs: list[tuple[str, str]] = []
        if event == "messaging-history.set":
            for m in data.get("lidPnMappings") or []:
                if isinstance(m, dict) and is_lid(m.get("lid")) and is_pn(m.get("pn")):
                    pairs.append((str(m["lid"]), str(m["pn"])))
        elif event in ("contacts.upsert", "contacts.update"):
            for c in data.get("contacts") or []:
                if not isinstance(c, dict):
                    continue
                pn, lid = pn_lid(c.get("phoneNumber") or c.get("id"), c.get("lid") or c.get("id"))
                if pn and lid:
                    pairs.append((lid, pn))
        await self.feed(pairs, event)
