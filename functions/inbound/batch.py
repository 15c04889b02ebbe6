"""One SQS FIFO batch, its chats answered in parallel.

Why not Powertools' ``SqsFifoPartialProcessor``: it handles the records one after another, so with a chatbot that
takes 10 s per answer (an LLM) a batch of 10 records from 10 chats needs 100 s and the later records run out of time
while the earlier ones are still being answered. Here each message group (one chat: ``MessageGroupId`` = session +
chat) runs in its own thread, its records in order, so a batch takes as long as its slowest chat.

The semantics are the ones the event source mapping expects from ``ReportBatchItemFailures`` with
``skip_group_on_error``: when a record fails, it and every later record of its group are reported as failed (SQS
redelivers them in order); the other groups are not affected. A batch in which every record failed is reported
the same way, record by record (Powertools raises instead; for Lambda both mean "retry them all").
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

RecordHandler = Callable[[SQSRecord], Any]
OnChatFailed = Callable[[list[SQSRecord], BaseException], None]
"""Called with a chat's failed record and the records after it (not attempted), and the error."""


def chats(records: list[SQSRecord]) -> list[list[SQSRecord]]:
    """The batch's records by message group, each group in queue order, the groups in order of first appearance."""
    groups: dict[str, list[SQSRecord]] = {}
    for record in records:
        groups.setdefault(record.attributes.message_group_id or record.message_id, []).append(record)
    return list(groups.values())


def _run_chat(records: list[SQSRecord], handle: RecordHandler, on_failed: OnChatFailed | None) -> list[str]:
    """Handles the records in order; the ids of the failed one and of those after it (not attempted)."""
    for index, record in enumerate(records):
        try:
            handle(record)
        except Exception as e:
            if on_failed is not None:
                on_failed(records[index:], e)
            return [r.message_id for r in records[index:]]
    return []


def process_fifo_batch(
    event: dict[str, Any], handle: RecordHandler, *, on_chat_failed: OnChatFailed | None = None, max_chats: int = 10
) -> PartialItemFailureResponse:
    """``handle`` every record of the SQS ``event``; raises nothing: a failing record (``handle`` raised) is listed in
    ``batchItemFailures`` with the rest of its chat."""
    records = [SQSRecord(raw) for raw in event.get("Records", [])]
    groups = chats(records)
    failed: set[str] = set()
    if len(groups) == 1:
        failed.update(_run_chat(groups[0], handle, on_chat_failed))
    elif groups:
        with ThreadPoolExecutor(max_workers=min(len(groups), max_chats), thread_name_prefix="chat") as pool:
            for ids in pool.map(lambda group: _run_chat(group, handle, on_chat_failed), groups):
                failed.update(ids)
    return {"batchItemFailures": [{"itemIdentifier": r.message_id} for r in records if r.message_id in failed]}
