"""The inbound Lambda: SQS FIFO batch → ``logic.handle_record`` per record (see ``logic`` for the decisions).

Everything is wired once per execution environment from the environment (``InboundConfig.from_env``); boto3 honours
``AWS_ENDPOINT_URL`` itself. ``build(config)`` does the wiring, so tests can construct it with their own settings.
"""

from __future__ import annotations

import os
from typing import Any

import boto3  # type: ignore[import-untyped]
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.inbound import logic
from functions.inbound.answers import AnswerStore
from functions.inbound.chatbot import Chatbot, RetryPolicy
from functions.inbound.config import InboundConfig
from functions.inbound.lidmap import LidMap
from functions.inbound.queues import DeadLetterQueue, ReplyQueue

logger = Logger(service="wa-relay")


def build(config: InboundConfig) -> tuple[logic.Deps, IdempotencyConfig]:
    dynamodb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
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
        typing_indicator=config.typing_indicator,
        read_receipts=config.read_receipts,
    )
    return deps, idempotency


config = InboundConfig.from_env(os.environ)
deps, idempotency = build(config)
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
"""A failed record fails only the rest of its own chat (message group) in this batch; other chats go on."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any] | None:
    try:
        return logic.handle_record(record, deps, remaining_ms=lambda_context.get_remaining_time_in_millis())
    except Exception as e:
        logger.warning("record failed; SQS will redeliver it", extra={"error": f"{type(e).__name__}: {e}"})
        raise


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
