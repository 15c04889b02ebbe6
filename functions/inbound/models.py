"""The SQS record this function consumes: ``body`` is one ``InboundEnvelope`` (``connector.contracts``).

The body is parsed straight from the record's JSON text. Powertools' ``SqsRecordModel`` would also validate the
record's envelope, which SQS itself produced, and importing its parser models pulls in the models of every event
source Powertools knows: cold-start time spent for nothing (``docs/bench-changes.md`` has the measurement).
"""

from __future__ import annotations

from pydantic import ValidationError

from connector.contracts import InboundEnvelope


def parse_body(body: str) -> InboundEnvelope:
    """The envelope in an SQS record's body; ``ValidationError`` (``json_invalid`` for non-JSON) otherwise."""
    return InboundEnvelope.model_validate_json(body)


def describe_invalid(error: ValidationError, what: str = "InboundEnvelope") -> str:
    """Why a record did not parse, from error types and locations only: the body (message text) never appears."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        if item["type"] == "json_invalid":
            return "body is not JSON"
        loc = ".".join(str(p) for p in item["loc"])
        problems.append(f"{loc}: {item['type']}")
    shown = "; ".join(problems[:5]) + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "")
    return f"body is not a valid {what} ({shown})"
