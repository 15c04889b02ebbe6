"""The AWS resources wa-relay uses, defined once.

The local stack creates exactly these (``create_tables``/``create_queues``), the code reads their names from the
environment variables named here, and ``infra/terraform`` mirrors them (a test checks that they agree). Boto3 is
imported lazily so the Lambda bundle and the contracts can import the names without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NAME_PREFIX = "wa-relay"
"""Every default name below is ``<prefix>-<suffix>``; Terraform names resources ``${var.name_prefix}-<suffix>``."""


@dataclass(frozen=True)
class TableSpec:
    env: str
    """Environment variable holding the table name."""
    default_name: str
    hash_key: str
    range_key: str | None = None
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class QueueSpec:
    env: str
    """Environment variable holding the queue URL."""
    name: str
    dlq_name: str
    max_receive_count: int
    visibility_timeout_s: int

    @property
    def dlq_env(self) -> str:
        """Environment variable holding the DLQ's URL (``INBOUND_QUEUE_URL`` → ``INBOUND_QUEUE_DLQ_URL``)."""
        return self.env.replace("_URL", "_DLQ_URL")


AUTH_TABLE = TableSpec("AUTH_TABLE", "wa-relay-auth", hash_key="pk", range_key="sk", ttl_attribute="expiration")
"""Creds, leases and every Signal key: ``pk`` = session id, ``sk`` = ``creds`` | ``lease`` | ``key#<type>#<id>``. TTL on
``expiration``, which only the decrypted-message buffer's items carry."""

LID_MAP_TABLE = TableSpec("LID_MAP_TABLE", "wa-relay-lid-map", hash_key="pk")
"""``pk`` = ``lid#<lidUser>`` → ``pn``, and ``pn#<pnUser>`` → ``lid``: two items per pair, both read consistently."""

IDEMPOTENCY_TABLE = TableSpec("IDEMPOTENCY_TABLE", "wa-relay-idempotency", hash_key="id", ttl_attribute="expiration")
"""Powertools idempotency records (inbound ``event_id``) and reply-send records; TTL on ``expiration``."""

SETTINGS_TABLE = TableSpec("SETTINGS_TABLE", "wa-relay-settings", hash_key="pk")
"""Per-session bot settings: ``pk`` = ``settings#<session>`` → ``settings`` (the JSON of
``connector.contracts.SessionSettings``). A table of its own, not items in ``auth``: the inbound function reads it, and
must not be able to read key material."""

TABLES = (AUTH_TABLE, LID_MAP_TABLE, IDEMPOTENCY_TABLE, SETTINGS_TABLE)

INBOUND_FUNCTION_TIMEOUT_S = 60
"""The inbound Lambda's timeout; the inbound queue's visibility timeout is six times it (AWS guidance). Sized for
LLM bots: one 30 s chatbot attempt (``CHATBOT_TIMEOUT_S``) plus the function's 10 s reserve, with room to spare."""

INBOUND_RESERVE_S = 10
"""What the inbound function keeps back from the chatbot for the AWS calls that follow its answer
(``functions/inbound/logic.py``); Terraform checks that a chatbot attempt and this fit in the function timeout."""

INBOUND_QUEUE = QueueSpec(
    "INBOUND_QUEUE_URL", "wa-relay-inbound.fifo", "wa-relay-inbound-dlq.fifo",
    max_receive_count=100, visibility_timeout_s=6 * INBOUND_FUNCTION_TIMEOUT_S,
)  # fmt: skip
"""``max_receive_count`` is only the backstop for invocations that die before deciding: the function itself delays a
failed record (``ChangeMessageVisibility``) and moves it to the DLQ, with its reason, after its outage budget
(``functions/inbound/retries.py``)."""
OUTBOUND_QUEUE = QueueSpec(
    "OUTBOUND_QUEUE_URL", "wa-relay-outbound.fifo", "wa-relay-outbound-dlq.fifo",
    max_receive_count=5, visibility_timeout_s=20,
)  # fmt: skip
"""Short visibility on purpose: a connector that dies holds the replies it had received (and those its last long
poll receives after its death) invisible for this long, and in a FIFO queue they block the rest of their chat. A
send takes well under a second; one that outlasts this is received again and re-sent with the same WhatsApp id,
which the recipient's phone drops as a duplicate."""
EVENTS_FUNCTION_TIMEOUT_S = 30
"""The events function's timeout: a batch is at most ten POSTs to ``EVENTS_URL`` of ``EVENTS_TIMEOUT_S`` (5 s) each,
one session after another but sessions in parallel, so a batch of one slow session fits with room to spare."""
EVENTS_QUEUE = QueueSpec(
    "EVENTS_QUEUE_URL", "wa-relay-events.fifo", "wa-relay-events-dlq.fifo",
    max_receive_count=20, visibility_timeout_s=6 * EVENTS_FUNCTION_TIMEOUT_S,
)  # fmt: skip
"""Lifecycle and message-status events for ``EVENTS_URL`` (``connector.contracts.RelayEvent``; group = session, dedup
id = the event's stable id). The visibility timeout is six times the function's (AWS guidance); a record the receiver
did not take is hidden for a backoff instead (``functions/events/logic.py``: 5 s doubling to 15 min), so the 20
receives last about three hours of a receiver that is down before SQS moves the head event to the DLQ and the
session's next events go on. A receiver that refuses an event for good (4xx) does not cost its session that wait: the
function dead-letters it at once, with the reason."""
QUEUES = (INBOUND_QUEUE, OUTBOUND_QUEUE, EVENTS_QUEUE)

# AWS limits the code enforces itself (moto is lenient about some of them).
DYNAMODB_BATCH_GET_MAX = 100
DYNAMODB_BATCH_WRITE_MAX = 25
DYNAMODB_TRANSACT_MAX = 100
DYNAMODB_ITEM_MAX_BYTES = 400 * 1024
SQS_BODY_MAX_BYTES = 1024 * 1024
SQS_BATCH_MAX = 10


def create_tables(dynamodb: Any, names: dict[str, str] | None = None) -> dict[str, str]:
    """Create every table (on-demand) that does not exist yet; returns ``{env: table name}``."""
    names = names or {}
    existing = set(dynamodb.list_tables().get("TableNames", []))
    out = {}
    for spec in TABLES:
        name = names.get(spec.env, spec.default_name)
        out[spec.env] = name
        if name in existing:
            continue
        keys = [(spec.hash_key, "HASH")] + ([(spec.range_key, "RANGE")] if spec.range_key else [])
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        if spec.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
            )
    return out


def create_queues(sqs: Any) -> dict[str, str]:
    """Create every FIFO queue with its FIFO DLQ and redrive policy; returns ``{env: queue url}``."""
    out = {}
    for spec in QUEUES:
        fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        dlq_url = sqs.create_queue(QueueName=spec.dlq_name, Attributes=fifo)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receive_count)}
        url = sqs.create_queue(
            QueueName=spec.name,
            Attributes={
                **fifo,
                "VisibilityTimeout": str(spec.visibility_timeout_s),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        out[spec.env] = url
        out[spec.dlq_env] = dlq_url
    return out


# ---- the Terraform side (DESIGN section 10: table, queue and env names agree with the code) ----

TERRAFORM_RESOURCES_JSON = Path(__file__).resolve().parents[1] / "infra" / "terraform" / "resources.json"
"""Generated from the specs above and read by Terraform (``jsondecode(file(...))``); ``tests/infra`` checks that the
committed file is what ``terraform_resources()`` returns, so a change here without regenerating fails the tests."""


def _suffix(default_name: str) -> str:
    prefix = f"{DEFAULT_NAME_PREFIX}-"
    if not default_name.startswith(prefix):
        raise ValueError(f"{default_name!r} does not start with {prefix!r}")
    return default_name.removeprefix(prefix)


def terraform_resources() -> dict[str, Any]:
    """The tables, queues, env names and the function timeout as ``infra/terraform/resources.json`` holds them.

    Keys are the Terraform resource names: ``AUTH_TABLE`` → ``auth``, ``INBOUND_QUEUE_URL`` → ``inbound``."""
    return {
        "_generated": "by `python -m connector.resources --write-terraform` from connector/resources.py; do not edit",
        "default_name_prefix": DEFAULT_NAME_PREFIX,
        "inbound_function_timeout_s": INBOUND_FUNCTION_TIMEOUT_S,
        "inbound_reserve_s": INBOUND_RESERVE_S,
        "events_function_timeout_s": EVENTS_FUNCTION_TIMEOUT_S,
        "tables": {
            spec.env.removesuffix("_TABLE").lower(): {
                "env": spec.env,
                "suffix": _suffix(spec.default_name),
                "hash_key": spec.hash_key,
                "range_key": spec.range_key,
                "ttl_attribute": spec.ttl_attribute,
            }
            for spec in TABLES
        },
        "queues": {
            spec.env.removesuffix("_QUEUE_URL").lower(): {
                "env": spec.env,
                "dlq_env": spec.dlq_env,
                "suffix": _suffix(spec.name),
                "dlq_suffix": _suffix(spec.dlq_name),
                "max_receive_count": spec.max_receive_count,
                "visibility_timeout_s": spec.visibility_timeout_s,
            }
            for spec in QUEUES
        },
    }


def terraform_resources_json() -> str:
    return json.dumps(terraform_resources(), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connector.resources", description=__doc__)
    parser.add_argument("--write-terraform", action="store_true", help=f"(re)write {TERRAFORM_RESOURCES_JSON}")
    args = parser.parse_args(argv)
    if args.write_terraform:
        TERRAFORM_RESOURCES_JSON.write_text(terraform_resources_json())
        print(f"wrote {TERRAFORM_RESOURCES_JSON}")
    else:
        sys.stdout.write(terraform_resources_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
