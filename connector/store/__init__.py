"""Stores behind small interfaces (``abstract``), each with an in-memory twin (``memory``) and a DynamoDB
implementation (``connector.store.dynamodb``). The DynamoDB package is not imported here, so code that only needs the
interfaces or the memory stores never loads aioboto3."""

from connector.store.abstract import (
    AuthStore,
    CredsStore,
    Lease,
    LeaseStore,
    LidMapStore,
    ReplyLog,
    SentReply,
    SettingsStore,
    SignalKeyStore,
)
from connector.store.memory import (
    MemoryAuthStore,
    MemoryLeaseStore,
    MemoryLidMapStore,
    MemoryReplyLog,
    MemorySettingsStore,
)

__all__ = [
    "AuthStore",
    "CredsStore",
    "Lease",
    "LeaseStore",
    "LidMapStore",
    "MemoryAuthStore",
    "MemoryLeaseStore",
    "MemoryLidMapStore",
    "MemoryReplyLog",
    "MemorySettingsStore",
    "ReplyLog",
    "SentReply",
    "SettingsStore",
    "SignalKeyStore",
]
