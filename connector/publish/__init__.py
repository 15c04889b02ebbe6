"""Inbound publishers: hand every WhatsApp message event to ``inbound.fifo`` (or to memory in tests)."""

from connector.publish.abstract import InboundPublisher
from connector.publish.memory import MemoryPublisher

__all__ = ["InboundPublisher", "MemoryPublisher"]
