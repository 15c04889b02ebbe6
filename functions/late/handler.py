"""The late-answer Lambda behind a Function URL (API Gateway v2 payload shape): ``POST`` a signed ``LateAnswer``.

Wired once per execution environment from the environment (``LateConfig.from_env``); the decisions live in
``logic``. ``make up`` serves the same ``lambda_handler`` on a local port (``infra/local/late.py``).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3  # type: ignore[import-untyped]
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.inbound.errors import ReplySendError
from functions.inbound.logic import AWS_CLIENT_CONFIG
from functions.inbound.queues import ReplyQueue
from functions.late import logic
from functions.late.config import LateConfig
from functions.late.errors import PendingStoreError
from functions.late.pending import PendingAnswers

logger = Logger(service="wa-relay")

SIGNATURE_HEADER = "x-relay-signature"
"""Function URLs lower-case header names."""


def build(config: LateConfig) -> logic.Deps:
    # The TTL is the inbound function's to set (it writes the items); this function only reads and claims them.
    return logic.Deps(
        secret=config.secret,
        pending=PendingAnswers(boto3.client("dynamodb", config=AWS_CLIENT_CONFIG), config.idempotency_table, ttl_s=0),
        replies=ReplyQueue(boto3.client("sqs", config=AWS_CLIENT_CONFIG), config.outbound_queue_url),
    )


deps = build(LateConfig.from_env(os.environ))


def respond(response: logic.Response, **headers: str) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": json.dumps(response.body),
    }


def request_body(event: dict[str, Any]) -> bytes:
    """The raw bytes the bot signed: Function URLs base64-encode bodies they do not take for text."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    if method != "POST":
        return respond(logic.error(405, "method_not_allowed", "POST a signed late answer"), Allow="POST")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        return respond(logic.handle(request_body(event), headers.get(SIGNATURE_HEADER), deps))
    except (PendingStoreError, ReplySendError) as e:
        logger.warning("late answer not taken; the bot may post it again", extra={"error": f"{e}: {e.__cause__}"})
        return respond(logic.error(503, "unavailable", "try again: the same body is accepted again"))
