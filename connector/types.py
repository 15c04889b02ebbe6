"""Identifiers used across the connector. ``NewType`` keeps a session id from being passed as a jid."""

from __future__ import annotations

from typing import NewType

SessionId = NewType("SessionId", str)
"""The connector's name for one linked WhatsApp account (``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``)."""

Jid = NewType("Jid", str)
"""A WhatsApp address as Baileys spells it: ``user[:device]@s.whatsapp.net``, ``user@lid``, ``id@g.us``."""

MessageId = NewType("MessageId", str)
"""A WhatsApp message id (``key.id``)."""
