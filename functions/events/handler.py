"""The events Lambda: SQS FIFO batch of ``RelayEvent`` bodies → ``logic.handle_record`` per record (see ``logic``).

Wired once per execution environment from the environment (``EventsConfig.from_env``); boto3 honours
``AWS_ENDPOINT_URL`` itself. Sessions (message groups) run in parallel, each in order (``functions.inbound.batch``).
"""

from __future__ import annotations

import os
from typing import Any

import boto3  # type: ignore[import-untyped]
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.events import logic
from functions.events.config import EventsConfig
from functions.inbound.batch import process_fifo_batch
from functions.inbound.logic import AWS_CLIENT_CONFIG
from functions.inbound.queues import DeadLetterQueue
from functions.inbound.retries import Visibility, receive_count

logger = Logger(service="wa-relay")


def build(config: EventsConfig) -> tuple[logic.Deps, Visibility]:
    sqs = boto3.client("sqs", config=AWS_CLIENT_CONFIG)
    deps = logic.Deps(
        receiver=logic.Receiver(config.events_url, config.secret, timeout_s=config.timeout_s),
        dead_letters=DeadLetterQueue(sqs, config.dlq_url, origin=logic.ORIGIN),
    )
    return deps, Visibility(sqs, config.queue_url)


deps, visibility = build(EventsConfig.from_env(os.environ))


def retry_later(records: list[SQSRecord], error: BaseException) -> None:
    """A session failed at ``records[0]``: hide it and the session's later records for the retry's backoff."""
    visibility.hide(records, logic.retry_delay_s(error, receive_count(records[0])))


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    try:
        logic.handle_record(record, deps, remaining_ms=lambda_context.get_remaining_time_in_millis())
    except Exception as e:
        logger.warning("event not delivered; retried later", extra={"error": f"{type(e).__name__}: {e}"})
        raise
    finally:
        logger.thread_safe_clear_keys()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_fifo_batch(event, lambda record: record_handler(record, context), on_chat_failed=retry_later)
