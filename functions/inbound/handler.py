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
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

from functions.inbound import logic, metrics
from functions.inbound.answers import AnswerStore
from functions.inbound.batch import process_fifo_batch
from functions.inbound.chatbot import Chatbot, RetryPolicy
from functions.inbound.config import InboundConfig
from functions.inbound.lidmap import LidMap
from functions.inbound.queues import DeadLetterQueue, ReplyQueue

logger = Logger(service="wa-relay")


AWS_CLIENT_CONFIG = BotoConfig(
    connect_timeout=1.0, read_timeout=3.0, retries={"mode": "standard", "total_max_attempts": 2}
)
"""Explicit and short (botocore's defaults are 60 s and more attempts): one call, retry included, must fit in
``logic.RESERVE_S``, or a stalled DynamoDB or SQS call after the chatbot answered would run the invocation into its
timeout with the idempotency record still in progress (tests/functions checks the bound)."""


def build(config: InboundConfig) -> tuple[logic.Deps, IdempotencyConfig]:
    dynamodb = boto3.client("dynamodb", config=AWS_CLIENT_CONFIG)
    sqs = boto3.client("sqs", config=AWS_CLIENT_CONFIG)
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
    )
    return deps, idempotency


config = InboundConfig.from_env(os.environ)
deps, idempotency = build(config)


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
        return process_fifo_batch(event, lambda record: record_handler(record, context))
    finally:
        metrics.flush()
