"""The one way the connector opens an AWS client (aioboto3): created once per component in its ``start()``, closed by
the returned stack in its ``stop()`` (aws-serverless.md §6: never a client per call, never left unclosed)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]


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
