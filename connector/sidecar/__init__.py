"""Client of the Node bridge sidecar (``bridge/``): process, JSON lines RPC, typed calls, wire types, errors.

This package imports nothing from the rest of the connector except its error base and id types, so it can be
tested (and reused) on its own.
"""

from connector.sidecar.client import BridgeClient, BridgeHost
from connector.sidecar.process import BridgeCommand

__all__ = ["BridgeClient", "BridgeCommand", "BridgeHost"]
