"""Stores behind small interfaces: an in-memory implementation and (for deployment) a DynamoDB one."""

from connector.store.abstract import (
    AuthStore,
    CredsConflict,
    CredsStore,
    Lease,
    LeaseLost,
    LeaseStore,
    LidMapStore,
    ReplyLog,
    SignalKeyStore,
)
from connector.store.dynamodb import DynamoAuthStore, DynamoLidMapStore, DynamoReplyLog
from connector.store.memory import MemoryAuthStore, MemoryLidMapStore, MemoryReplyLog

__all__ = [
    "AuthStore",
    "CredsConflict",
    "CredsStore",
    "DynamoAuthStore",
    "DynamoLidMapStore",
    "DynamoReplyLog",
    "Lease",
    "LeaseLost",
    "LeaseStore",
    "LidMapStore",
    "MemoryAuthStore",
    "MemoryLidMapStore",
    "MemoryReplyLog",
    "ReplyLog",
    "SignalKeyStore",
]
