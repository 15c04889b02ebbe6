"""``CHATBOT_SECRET_ARN``: the chatbot's HMAC secret read from Secrets Manager (moto's server, the same one the suite
runs for SQS), once per cold start, never shown; and exactly one of ``CHATBOT_SECRET`` / ``CHATBOT_SECRET_ARN``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from functions.inbound.config import InboundConfig
from functions.inbound.errors import InboundConfigError
from functions.inbound.secret import fetch_secret_string
from tests.functions.conftest import SECRET, LambdaContext, Wire, fresh, golden, sqs_event, sqs_record
from tests.functions.test_units import REQUIRED
from tests.support.chatbot import ChatbotServer

NewSecret = Callable[..., str]


@pytest.fixture
def secretsmanager(sqs_endpoint: str) -> Any:
    return boto3.client("secretsmanager", endpoint_url=sqs_endpoint)


@pytest.fixture
def new_secret(secretsmanager: Any) -> NewSecret:
    """Creates a secret with a unique name (``value=None``: no version yet, as Terraform leaves it); returns its ARN."""

    def create(value: str | None) -> str:
        extra = {} if value is None else {"SecretString": value}
        return str(secretsmanager.create_secret(Name=f"wa-relay-chatbot-{uuid.uuid4().hex[:8]}", **extra)["ARN"])

    return create


def _without_secret(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "CHATBOT_SECRET"}


def test_secret_by_arn_signs_the_chatbot_request_and_is_read_only_at_cold_start(
    wire: Wire,
    sqs_endpoint: str,
    secretsmanager: Any,
    new_secret: NewSecret,
    chatbot: ChatbotServer,
    lambda_context: LambdaContext,
) -> None:
    # GIVEN the chatbot's secret only in Secrets Manager (CHATBOT_SECRET empty counts as unset)
    arn = new_secret(SECRET)
    handler: ModuleType = wire(CHATBOT_SECRET="", CHATBOT_SECRET_ARN=arn, AWS_ENDPOINT_URL_SECRETS_MANAGER=sqs_endpoint)
    assert handler.config.chatbot_secret == SECRET
    assert SECRET not in repr(handler.config)
    # WHEN the secret disappears after the cold start, and then messages arrive
    secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    for _ in range(2):
        envelope = fresh(golden("pn"))
        result = handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context)
        # THEN each is signed with the secret read at cold start: no message asked Secrets Manager again
        assert result == {"batchItemFailures": []}
        [call] = chatbot.calls_for(envelope.event_id)
        assert call.signature_valid


def test_secret_value_is_trimmed_like_an_environment_value(new_secret: NewSecret, secretsmanager: Any) -> None:
    arn = new_secret(f"  {SECRET}\n")
    config = InboundConfig.from_env(
        {**_without_secret(REQUIRED), "CHATBOT_SECRET_ARN": arn}, lambda a: fetch_secret_string(a, secretsmanager)
    )
    assert config.chatbot_secret == SECRET


def test_both_secret_variables_set_is_an_error_and_nothing_is_fetched() -> None:
    fetched: list[str] = []
    with pytest.raises(InboundConfigError, match="only one of CHATBOT_SECRET and CHATBOT_SECRET_ARN"):
        InboundConfig.from_env({**REQUIRED, "CHATBOT_SECRET_ARN": "arn:x"}, lambda arn: fetched.append(arn) or "v")
    assert fetched == []


@pytest.mark.parametrize("empty", ["", "  "])
def test_neither_secret_variable_set_is_an_error(empty: str) -> None:
    env = {**_without_secret(REQUIRED), "CHATBOT_SECRET_ARN": empty}
    with pytest.raises(InboundConfigError, match="CHATBOT_SECRET or CHATBOT_SECRET_ARN must be set"):
        InboundConfig.from_env(env, lambda arn: pytest.fail("nothing to fetch"))


def test_other_variables_are_checked_before_secrets_manager_is_called() -> None:
    env = {**_without_secret(REQUIRED), "CHATBOT_SECRET_ARN": "arn:x", "OUTBOUND_QUEUE_URL": ""}
    with pytest.raises(InboundConfigError, match="OUTBOUND_QUEUE_URL"):
        InboundConfig.from_env(env, lambda arn: pytest.fail("fetched before the cheap checks"))


def test_missing_secret_is_a_clear_error(secretsmanager: Any, sqs_endpoint: str) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wa-relay-chatbot-nosuch-AbCdEf"
    with pytest.raises(InboundConfigError, match=r"CHATBOT_SECRET_ARN: cannot read .*nosuch.*ResourceNotFound"):
        fetch_secret_string(arn, secretsmanager)


def test_secret_without_a_value_yet_says_how_to_set_it(new_secret: NewSecret, secretsmanager: Any) -> None:
    arn = new_secret(None)
    with pytest.raises(InboundConfigError, match="put-secret-value"):
        fetch_secret_string(arn, secretsmanager)


def test_empty_secret_value_is_an_error(new_secret: NewSecret, secretsmanager: Any) -> None:
    arn = new_secret(" \n")
    with pytest.raises(InboundConfigError, match="is empty"):
        InboundConfig.from_env(
            {**_without_secret(REQUIRED), "CHATBOT_SECRET_ARN": arn}, lambda a: fetch_secret_string(a, secretsmanager)
        )


def test_handler_cold_start_fails_while_the_secret_has_no_value(
    wire: Wire, sqs_endpoint: str, new_secret: NewSecret
) -> None:
    # Lambda reports an init error and retries the cold start with the next batch, which stays on the queue meanwhile
    arn = new_secret(None)
    with pytest.raises(InboundConfigError, match="CHATBOT_SECRET_ARN: cannot read"):
        wire(CHATBOT_SECRET="", CHATBOT_SECRET_ARN=arn, AWS_ENDPOINT_URL_SECRETS_MANAGER=sqs_endpoint)
