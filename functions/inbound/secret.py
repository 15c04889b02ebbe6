"""The chatbot's HMAC secret from AWS Secrets Manager (``CHATBOT_SECRET_ARN``), which is how Terraform deploys it.

It is read once per execution environment: ``handler`` builds its config at import (the cold start), so no message
ever waits on Secrets Manager and a burst of messages costs no API calls. A changed secret is therefore picked up by
new execution environments only (README "Deploy to AWS" says how to force them). The value is never logged and never
put in an error message; errors name the secret's id (an ARN is not secret) and AWS's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from functions.inbound.errors import InboundConfigError

CHATBOT_SECRET_ARN_ENV = "CHATBOT_SECRET_ARN"
SECRET_CLIENT_CONFIG = BotoConfig(
    connect_timeout=1.0, read_timeout=3.0, retries={"mode": "standard", "total_max_attempts": 2}
)


def fetch_secret_string(secret_id: str, client: Any | None = None) -> str:
    """The ``SecretString`` of the secret's current version (``AWSCURRENT``). boto3 honours ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` itself, so tests point it at moto's server."""
    try:
        # Explicit timeouts: at cold start a stalled call with botocore's 60 s default would outlast Lambda's init.
        client = client if client is not None else boto3.client("secretsmanager", config=SECRET_CLIENT_CONFIG)
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as e:
        error = e.response.get("Error", {})
        hint = (
            " (a secret without a value: set it with `aws secretsmanager put-secret-value`)"
            if error.get("Code") == "ResourceNotFoundException"
            else ""
        )
        raise InboundConfigError(
            f"{CHATBOT_SECRET_ARN_ENV}: cannot read {secret_id}: {error.get('Code', 'error')}: "
            f"{error.get('Message', '')}{hint}"
        ) from None
    except BotoCoreError as e:
        raise InboundConfigError(f"{CHATBOT_SECRET_ARN_ENV}: cannot read {secret_id}: {e}") from None
    value = response.get("SecretString")
    if not isinstance(value, str):
        raise InboundConfigError(
            f"{CHATBOT_SECRET_ARN_ENV}: {secret_id} has no SecretString (binary secrets are not supported)"
        )
    return value


def secret_from_env(
    env: Mapping[str, str], fetch_secret: Callable[[str], str], error: type[Exception] = InboundConfigError
) -> str:
    """The HMAC secret from exactly one of ``CHATBOT_SECRET`` (the value: local runs, tests) and
    ``CHATBOT_SECRET_ARN`` (fetched from Secrets Manager); ``error`` names what is wrong, never the value."""
    value, arn = env.get("CHATBOT_SECRET", "").strip(), env.get(CHATBOT_SECRET_ARN_ENV, "").strip()
    if value and arn:
        raise error(f"set only one of CHATBOT_SECRET and {CHATBOT_SECRET_ARN_ENV}")
    if not value and not arn:
        raise error(f"CHATBOT_SECRET or {CHATBOT_SECRET_ARN_ENV} must be set")
    if value:
        return value
    fetched = fetch_secret(arn).strip()
    if not fetched:
        raise error(f"{CHATBOT_SECRET_ARN_ENV}: the secret {arn} is empty")
    return fetched
