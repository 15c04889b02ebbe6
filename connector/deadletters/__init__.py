"""The dead-letter tool (``wa-relay-dlq``, ``python -m connector.deadletters``): list, show, redrive and delete what
the relay could not deliver, from three sources:

- ``inbound``: the inbound DLQ (``INBOUND_QUEUE_DLQ_URL``), put back on ``inbound.fifo``;
- ``outbound``: the outbound DLQ (``OUTBOUND_QUEUE_DLQ_URL``), put back on ``outbound.fifo``;
- ``spool``: ``inbound.spool.rejected`` in ``SPOOL_DIR`` (entries SQS refused while the spool drained), put back on
  ``inbound.fifo`` once they are valid.

Every entry is shown with a reason and an origin. The relay sets them as message attributes when it dead-letters
something itself (``connector.contracts.DEAD_LETTER_ATTRIBUTES``); what SQS moved through a queue's redrive policy
carries none, and is shown as ``redrive: N receives`` (N = the source queue's ``maxReceiveCount``) from that queue.

Redrive, and why it answers an event at most once:
- A DLQ entry's copy gets a deduplication id of its own (``redrive_dedup_id``: a digest of the source, the event or
  reply id and the DLQ message id), never the original one. SQS remembers a FIFO deduplication id for five minutes,
  and an event that failed fast (a malformed neighbour, a missing session, the function's own dead-lettering) is
  still within them: a copy under the original id would be accepted and silently dropped, and deleting the entry
  then would lose it.
- The copy is sent first; the entry is taken out of the DLQ only once SQS accepted the copy. A crash in between
  leaves the entry where it was (hidden for ``HOLD_S``); redriving it again sends a copy with the same
  deduplication id, which SQS drops within five minutes, and later the receiving side drops: the inbound function by
  ``event_id`` (its idempotency record: an event answered within ``DEDUP_TTL_S`` is not sent to the chatbot again),
  the connector by the reply's WhatsApp id (its send record, and the contact's phone drops a resent id too).
- A copy carries the ``redrive`` message attribute, which the function treats as a redelivery: it reuses an answer an
  earlier attempt stored instead of asking the chatbot again.
- A rejected spool entry was never accepted by SQS, so its copy keeps the publisher's deduplication id, the
  ``event_id``: within five minutes only a live copy of the same event can share it.
- A redriven event is answered after the later messages of its chat (it joins the end of its message group).

An entry whose body is not what its queue carries (malformed), or that breaks an SQS limit (size, characters, id
format; checked here, since moto is lenient), is not put back; the tool says why, and ``delete`` removes it by id.
"""
