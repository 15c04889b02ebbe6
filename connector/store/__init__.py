"""Stores behind small interfaces: an in-memory implementation and (for deployment) a DynamoDB one."""

from connector.store.abstract import AuthStore, CredsStore, LidMapStore, ReplyLog, SignalKeyStore
from connector.store.memory import MemoryAuthStore, MemoryLidMapStore, MemoryReplyLog

__all__ = [
    "AuthStore",
    "CredsStore",
    "LidMapStore",
    "MemoryAuthStore",
    "MemoryLidMapStore",
    "MemoryReplyLog",
    "ReplyLog",
    "SignalKeyStore",
]
