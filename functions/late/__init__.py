"""The late-answer Lambda: a bot that answered ``202`` posts its replies here later (a Function URL), signed like the
relay's requests; they go to ``outbound.fifo`` like an immediate answer's (DESIGN section 6).

Shares the inbound function's zip (``make package``) and imports only what the inbound function does.
"""
