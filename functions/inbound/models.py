"""The SQS record this function consumes: ``body`` is one ``InboundEnvelope`` (``connector.contracts``)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json, ValidationError

from connector.contracts import InboundEnvelope


class InboundRecord(SqsRecordModel):
    body: Json[InboundEnvelope]


def describe_invalid(error: ValidationError) -> str:
    """Why a record did not parse, from error types and locations only: the body (message text) never appears."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        if item["type"] == "json_invalid":
            return "body is not JSON"
        loc = ".".join(str(p) for p in item["loc"])
        problems.append(f"{loc}: {item['type']}")
    shown = "; ".join(problems[:5]) + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "")
    return f"body is not a valid InboundEnvelope ({shown})"
