"""The one way the connector opens an AWS client (aioboto3): created once per component in its ``start()``, closed by
the returned stack in its ``stop()`` (aws-serverless.md §6: never a client per call, never left unclosed)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only an annotation here: importing this module loads no AWS library
    from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

SQS_INVALID_CODES = frozenset({"InvalidParameterValue", "InvalidMessageContents", "MissingParameter"})
"""An entry SQS refuses with one of these can never be sent as it is: dropped or set aside, not retried."""


def describe_error(e: BaseException, limit: int = 300) -> str:
    """``Code: Message`` of an AWS error (botocore's ``ClientError``), else the exception's type and text."""
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message', '')}"[:limit]
    return f"{type(e).__name__}: {e}"[:limit]


async def open_client(
    session: Any, service: str, *, region: str, endpoint_url: str | None, config: BotoConfig
) -> tuple[Any, AsyncExitStack]:
    """``(client, stack)``: ``await stack.aclose()`` closes the client. Nothing is left open if creation fails."""
    stack = AsyncExitStack()
    try:
        client = await stack.enter_async_context(
            session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
        )
    except BaseException:
        await stack.aclose()
        raise
    return client, stack
