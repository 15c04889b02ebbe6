"""What the DynamoDB stores write into items and read back: pure functions, no client and no I/O.

Values: the JSON text of what the bridge sent (BufferJSON form) in ``v`` (S); over ``compress_over`` bytes it is
zlib-compressed into ``z`` (B); if that is still over ``part_bytes``, the compressed bytes are split into parts and
the main item holds ``parts`` (N, how many) and ``h`` (S, the sha256 of the compressed bytes, so that a read notices
parts of an interrupted write).

Auth table layout (``pk`` = session id, ``sk`` =):

- ``creds``: the whole creds object, ``version`` (N, optimistic locking) and ``w`` (the id of the write that set it).
- ``key#<type>#<id>``: one Signal key. ``id`` is verbatim (``@ : / _ + =`` …); ``type`` too, except that ``%`` and
  ``#`` are percent-escaped so that the type/id split stays unambiguous for any type string.
- ``part#<key sk>#<n>``: part ``n`` of a value too large for one item (the main item holds ``parts`` and ``h``).
  Parts live under their own prefix: ``<sk>#part#<n>`` could equal the sk of a key whose id ends in ``#part#0``.
- ``chunks``: which keys of the session currently have parts (``m`` = {key sk: part count}), so an overwrite or a
  delete can remove stale parts without reading every key it writes first. Almost never written (only when a value
  crosses the part threshold); read once per session per process.
- ``lease``: the session's owner (``owner`` S, ``token`` N, ``expires_at`` N in Unix seconds). Removed only with the
  rest of the session (``delete_session``), so a logout leaves nothing behind; re-linking then starts again at token
  1, which is safe because fencing compares the owner id (unique per process) together with the token.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from connector.errors import StoreError
from connector.resources import DYNAMODB_ITEM_MAX_BYTES
from connector.store.abstract import Lease

Item = dict[str, Any]
"""One item in DynamoDB's low-level attribute-value form (``{"pk": {"S": "…"}}``)."""

CREDS_SK = "creds"
CHUNKS_SK = "chunks"
LEASE_SK = "lease"

COMPRESS_OVER = 32 * 1024
PART_BYTES = 350_000
"""Safely under the 400 KB item limit, which also counts attribute names and the (up to 1 KiB) sort key."""
MAX_PART_BYTES = DYNAMODB_ITEM_MAX_BYTES - 4096
"""The largest part that still leaves room in its item for the keys and attribute names."""

RETRYABLE_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


# ---- keys --------------------------------------------------------------------------------------------------------


def session_key(session: str, sk: str) -> Item:
    return {"pk": {"S": session}, "sk": {"S": sk}}


def key_sk(type: str, key_id: str) -> str:
    return f"key#{type.replace('%', '%25').replace('#', '%23')}#{key_id}"


def part_sk(sk: str, n: int) -> str:
    return f"part#{sk}#{n}"


def key_identity(key: Item) -> tuple[Any, ...]:
    """A hashable identity of an item key (``{"pk": {"S": "a"}, "sk": {"S": "b"}}`` → ``(("pk", "S", "a"), …)``), for
    deduplicating the keys of one batch."""
    return tuple(sorted((name, *next(iter(value.items()))) for name, value in key.items()))


# ---- the lease item ----------------------------------------------------------------------------------------------


def held_by(lease: Lease) -> dict[str, Any]:
    """The condition arguments of a request that must apply only while the lease item still carries ``lease``'s owner
    and token. Not its expiry: an expired lease that nobody has taken over is still ours, and taking it over changes
    the owner and the token."""
    return {
        "ConditionExpression": "#o = :o AND #t = :t",
        "ExpressionAttributeNames": {"#o": "owner", "#t": "token"},
        "ExpressionAttributeValues": {":o": {"S": lease.owner}, ":t": {"N": str(lease.token)}},
    }


# ---- sizes -------------------------------------------------------------------------------------------------------


def value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value, slightly over-estimated."""
    (kind, v), *_ = value.items()
    if kind in ("S", "N"):
        return len(str(v).encode())
    if kind == "B":
        return len(v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(x) for k, x in v.items())
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind in ("SS", "NS"):
        return sum(len(str(x).encode()) for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    return 1


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


# ---- values ------------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    attrs: Item
    """The main item's value attributes: ``v``, ``z`` or ``parts`` + ``h``."""
    parts: list[bytes] = field(default_factory=list)


def encode(value: Any, label: str, *, compress_over: int, part_bytes: int) -> Encoded:
    try:
        text = json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StoreError(f"failed to save {label}: not JSON") from e
    raw = text.encode()
    if len(raw) <= compress_over:
        return Encoded({"v": {"S": text}})
    z = zlib.compress(raw, 6)
    if len(z) <= part_bytes:
        return Encoded({"z": {"B": z}})
    parts = [z[i : i + part_bytes] for i in range(0, len(z), part_bytes)]
    return Encoded({"parts": {"N": str(len(parts))}, "h": {"S": hashlib.sha256(z).hexdigest()}}, parts)


def decode(item: Item, label: str, parts: list[bytes] | None = None) -> Any:
    try:
        if "v" in item:
            return json.loads(item["v"]["S"])
        if "z" in item:
            return json.loads(zlib.decompress(item["z"]["B"]))
        if parts is not None:
            z = b"".join(parts)
            if hashlib.sha256(z).hexdigest() != item["h"]["S"]:
                raise ValueError("parts do not match the digest (a write was interrupted)")
            return json.loads(zlib.decompress(z))
        raise ValueError("no value attribute")
    except (ValueError, KeyError, zlib.error) as e:
        raise StoreError(f"failed to read {label}: {e}") from e


# ---- errors ------------------------------------------------------------------------------------------------------


def error_code(e: BaseException) -> str:
    if isinstance(e, ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def cancellation_codes(e: BaseException) -> list[str] | None:
    """The per-action reason codes of a cancelled transaction (``"None"`` for an action that was fine); ``None`` if
    ``e`` is not a cancellation."""
    if error_code(e) != "TransactionCanceledException":
        return None
    assert isinstance(e, ClientError)
    reasons = e.response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code", "None")) for r in reasons]
    # Older botocore/emulators only put them in the message: "... specific reasons [ConditionalCheckFailed, None]".
    message = str(e.response.get("Error", {}).get("Message", ""))
    if "[" in message and message.endswith("]"):
        return [c.strip() for c in message[message.rindex("[") + 1 : -1].split(",")]
    return []


def describe(labels: list[str]) -> str:
    """What a failed write was about, for its error message: the first label and how many more."""
    return labels[0] if len(labels) == 1 else f"{labels[0]} (and {len(labels) - 1} more)"
