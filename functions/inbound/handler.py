"""The inbound Lambda: SQS FIFO batch → ``logic.handle_record`` per record (see ``logic`` for the decisions).

Everything is wired once per execution environment from the environment (``InboundConfig.from_env``); boto3 honours
``AWS_ENDPOINT_URL`` itself. ``build(config)`` does the wiring, so tests can construct it with their own settings.
"""

from __future__ import annotations

import os
from typing import Any

import boto3  # type: ignore[import-untyped]
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.inbound import logic, metrics
from functions.inbound.answers import AnswerStore
from functions.inbound.batch import process_fifo_batch
from functions.inbound.chatbot import Chatbot, RetryPolicy
from functions.inbound.config import InboundConfig
from functions.inbound.lidmap import LidMap
from functions.inbound.queues import DeadLetterQueue, ReplyQueue
from functions.inbound.ratelimit import RateLimiter
from functions.inbound.retries import OutagePolicy, Visibility, delay_s, receive_count
from functions.inbound.settings import SessionSettings
from functions.late.pending import PendingAnswers

logger = Logger(service="wa-relay")


def build(config: InboundConfig) -> tuple[logic.Deps, IdempotencyConfig]:
    dynamodb = boto3.client("dynamodb", config=logic.AWS_CLIENT_CONFIG)
    sqs = boto3.client("sqs", config=logic.AWS_CLIENT_CONFIG)
    idempotency = IdempotencyConfig(
        event_key_jmespath="event_id",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=config.dedup_ttl_s,
    )
    persistence = DynamoDBPersistenceLayer(table_name=config.idempotency_table, boto3_client=dynamodb)
    deps = logic.Deps(
        chatbot=Chatbot(
            config.chatbot_url,
            config.chatbot_secret,
            timeout_s=config.chatbot_timeout_s,
            retry=RetryPolicy(config.chatbot_max_attempts, config.chatbot_retry_base_s, config.chatbot_retry_max_s),
        ),
        lid_map=LidMap(dynamodb, config.lid_map_table),
        replies=ReplyQueue(sqs, config.outbound_queue_url),
        dead_letters=DeadLetterQueue(sqs, config.inbound_dlq_url),
        relay_once=logic.idempotent_relay(idempotency, persistence),
        answers=AnswerStore(dynamodb, config.idempotency_table, ttl_s=config.dedup_ttl_s),
        forward_groups=config.forward_groups,
        visibility=Visibility(sqs, config.inbound_queue_url),
        max_age_s=config.max_message_age_s,
        outage=OutagePolicy(budget_s=config.outage_budget_s, base_s=config.retry_base_s, max_s=config.retry_max_s),
        typing_indicator=config.typing_indicator,
        read_receipts=config.read_receipts,
        settings=SessionSettings(dynamodb, config.settings_table),
        rate_limiter=RateLimiter(dynamodb, config.idempotency_table),
        pending=PendingAnswers(dynamodb, config.idempotency_table, ttl_s=config.dedup_ttl_s),
    )
    return deps, idempotency


config = InboundConfig.from_env(os.environ)
deps, idempotency = build(config)


def retry_later(records: list[SQSRecord], error: BaseException) -> None:
    """A chat failed at ``records[0]``: hide it and the rest of the chat for the retry's backoff."""
    if deps.visibility is not None:
        deps.visibility.hide(records, delay_s(error, receive_count(records[0]), deps.outage))


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any] | None:
    try:
        return logic.handle_record(record, deps, remaining_ms=lambda_context.get_remaining_time_in_millis())
    except Exception as e:
        logger.warning("record failed; SQS will redeliver it", extra={"error": f"{type(e).__name__}: {e}"})
        raise
    finally:
        logger.thread_safe_clear_keys()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """The batch's chats run in parallel, each in order (``batch.py``); a failed record fails the rest of its chat."""
    idempotency.register_lambda_context(context)
    try:
        return process_fifo_batch(event, lambda record: record_handler(record, context), on_chat_failed=retry_later)
    finally:
        metrics.flush()
