"""Stores behind small interfaces: an in-memory implementation and (for deployment) a DynamoDB one."""

from connector.store.abstract import AuthStore, CredsStore, SignalKeyStore
from connector.store.memory import MemoryAuthStore

__all__ = ["AuthStore", "CredsStore", "MemoryAuthStore", "SignalKeyStore"]
