"""The events Lambda: ``events.fifo`` → a signed ``POST`` of each ``RelayEvent`` to ``EVENTS_URL`` (DESIGN section 7).

Shares the inbound function's zip (``make package``) and imports only what the inbound function does.
"""
