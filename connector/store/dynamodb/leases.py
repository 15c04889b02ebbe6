"""The lease store on DynamoDB (DESIGN section 7): the ``lease`` item of each session in the auth table (layout in
``connector.store.dynamodb.codec``), taken, extended and given up with conditional updates, each one atomic. The auth
store on the same table fences its writes with a ``ConditionCheck`` on this item."""

from __future__ import annotations

import time

from connector.errors import LeaseLost, StoreError
from connector.resources import AUTH_TABLE
from connector.store.abstract import Lease, LeaseStore
from connector.store.dynamodb.base import DynamoComponent
from connector.store.dynamodb.codec import LEASE_SK, Item, error_code, session_key
from connector.types import SessionId

_NAMES = {"#o": "owner", "#t": "token", "#e": "expires_at"}


class DynamoLeaseStore(DynamoComponent, LeaseStore):
    default_table = AUTH_TABLE.default_name

    async def acquire(self, session: SessionId, owner: str, ttl_s: float) -> Lease | None:
        for _ in range(2):
            # Ours (expired or not): extend it, same token. Else free or expired: take it with the next token. Two
            # conditional updates, each atomic; a race between them (we took it meanwhile) is caught by the 2nd round.
            expires = time.time() + ttl_s
            item = await self._update(
                session, "SET #e = :e", "#o = :me", {":me": {"S": owner}, ":e": {"N": f"{expires:.6f}"}}
            )
            if item is None:
                item = await self._update(
                    session,
                    "SET #o = :me, #e = :e, #t = if_not_exists(#t, :zero) + :one",
                    "attribute_not_exists(pk) OR #e < :now",
                    {
                        ":me": {"S": owner},
                        ":e": {"N": f"{expires:.6f}"},
                        ":now": {"N": f"{time.time():.6f}"},
                        ":zero": {"N": "0"},
                        ":one": {"N": "1"},
                    },
                )
            if item is not None:
                return _lease_of(session, item)
        return None

    async def renew(self, lease: Lease, ttl_s: float) -> Lease:
        expires = time.time() + ttl_s
        item = await self._update(
            lease.session,
            "SET #e = :e",
            "#o = :me AND #t = :t AND #e > :zero",  # a released lease (expires_at 0) is given up: not renewed
            {
                ":me": {"S": lease.owner},
                ":t": {"N": str(lease.token)},
                ":e": {"N": f"{expires:.6f}"},
                ":zero": {"N": "0"},
            },
        )
        if item is None:
            raise LeaseLost(f"lease of {lease.session} (token {lease.token}) is no longer held by {lease.owner}")
        return _lease_of(lease.session, item)

    async def release(self, lease: Lease) -> None:
        await self._update(
            lease.session,
            "SET #e = :zero",
            "#o = :me AND #t = :t",
            {":me": {"S": lease.owner}, ":t": {"N": str(lease.token)}, ":zero": {"N": "0"}},
        )

    async def get_lease(self, session: SessionId) -> Lease | None:
        item = await self._get_item(session_key(session, LEASE_SK), f"the lease of {session}")
        return None if item is None else _lease_of(session, item)

    async def _update(self, session: str, update: str, condition: str, values: Item) -> Item | None:
        """The lease item after a conditional update; ``None`` if the condition failed."""
        names = {k: v for k, v in _NAMES.items() if k in update or k in condition}
        client = self.client
        try:
            resp = await client.update_item(
                TableName=self.table,
                Key=session_key(session, LEASE_SK),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except Exception as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return None
            raise StoreError(f"failed to save the lease of {session}") from e
        return resp["Attributes"]  # type: ignore[no-any-return]


def _lease_of(session: str, item: Item) -> Lease:
    return Lease(
        session=SessionId(session),
        owner=item["owner"]["S"],
        token=int(item["token"]["N"]),
        expires_at=float(item["expires_at"]["N"]),
    )
