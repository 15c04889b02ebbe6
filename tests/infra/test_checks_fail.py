"""The structural checks can fail: each one is run on a small valid stack (which must pass) and on copies broken in
one place (which must be reported). Without these, a check that reads the wrong key would pass forever."""

from __future__ import annotations

import pytest

from connector import resources
from tests.infra.tfmodel import (
    Model,
    TableExpectation,
    Unresolved,
    check_alarms,
    check_connector_service,
    check_env,
    check_iam,
    check_inbound_function,
    check_log_groups,
    check_queues,
    check_tables,
    check_variables,
)

QUEUES = """
resource "aws_sqs_queue" "dlq" {
  name       = "x-dlq.fifo"
  fifo_queue = true
}
resource "aws_sqs_queue" "main" {
  name                       = "x-main.fifo"
  fifo_queue                 = true
  visibility_timeout_seconds = 180
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 5
  })
}
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}
"""

TABLE = """
resource "aws_dynamodb_table" "idempotency" {
  name         = "wa-relay-idempotency"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"
  attribute {
    name = "id"
    type = "S"
  }
  ttl {
    attribute_name = "expiration"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }
}
"""
TABLE_EXPECTED = [TableExpectation("idempotency", "wa-relay-idempotency", "id", None, "expiration")]

FUNCTION = (
    QUEUES
    + """
resource "aws_lambda_function" "fn" {
  runtime       = "python3.11"
  architectures = ["arm64"]
  timeout       = 30
}
resource "aws_lambda_event_source_mapping" "m" {
  event_source_arn        = aws_sqs_queue.main.arn
  function_name           = aws_lambda_function.fn.arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = 20
  }
}
"""
)

SERVICE = """
locals {
  container = {
    name        = "c"
    healthCheck = { command = ["CMD", "python", "-m", "connector.healthcheck"] }
  }
}
resource "aws_ecs_task_definition" "t" {
  container_definitions = jsonencode([local.container])
}
resource "aws_ecs_service" "s" {
  task_definition                    = aws_ecs_task_definition.t.arn
  desired_count                      = 1
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}
"""
LONE_QUEUE = 'resource "aws_sqs_queue" "lone" {\n  name = "l.fifo"\n  fifo_queue = true\n}\n'
HEALTH = ["CMD", "python", "-m", "connector.healthcheck"]

IAM = """
data "aws_iam_policy_document" "p" {
  statement {
    sid       = "Queue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.g.arn}:*"]
  }
  dynamic "statement" {
    for_each = var.exec ? [1] : []
    content {
      actions   = ["ssmmessages:OpenDataChannel"]
      resources = ["*"]
    }
  }
}
resource "aws_iam_role_policy" "p" {
  policy = data.aws_iam_policy_document.p.json
}
data "aws_iam_policy_document" "key" {
  statement {
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::123456789012:root"]
    }
    actions   = ["kms:Decrypt"]
    resources = ["*"]
  }
}
resource "aws_kms_key" "k" {
  policy = data.aws_iam_policy_document.key.json
}
variable "exec" {
  description = "x"
  type        = bool
  default     = true
}
"""
STAR_OK = {"ssmmessages:OpenDataChannel": "no resource-level permission"}

ALARMS = (
    FUNCTION
    + """
resource "aws_ecs_service" "s" {}
resource "aws_sns_topic" "t" {}
resource "aws_cloudwatch_metric_alarm" "dlq" {
  for_each      = { main = aws_sqs_queue.dlq.name }
  namespace     = "AWS/SQS"
  metric_name   = "ApproximateNumberOfMessagesVisible"
  dimensions    = { QueueName = each.value }
  alarm_actions = [aws_sns_topic.t.arn]
}
resource "aws_cloudwatch_metric_alarm" "errors" {
  namespace     = "AWS/Lambda"
  metric_name   = "Errors"
  dimensions    = { FunctionName = aws_lambda_function.fn.function_name }
  alarm_actions = [aws_sns_topic.t.arn]
}
resource "aws_cloudwatch_metric_alarm" "health" {
  namespace     = "ECS/ContainerInsights"
  metric_name   = "RunningTaskCount"
  dimensions    = { ServiceName = aws_ecs_service.s.name }
  alarm_actions = [aws_sns_topic.t.arn]
}
"""
)

VARIABLES = """
variable "size" {
  description = "How many."
  type        = number
  default     = 1
  validation {
    condition     = var.size <= 10
    error_message = "at most 10"
  }
}
"""
VALIDATION_BLOCK = '  validation {\n    condition     = var.size <= 10\n    error_message = "at most 10"\n  }\n'


def problems_of(text: str, check: str) -> list[str]:
    model = Model.from_text(text)
    if check == "queues":
        return check_queues(model, 5)
    if check == "tables":
        return check_tables(model, TABLE_EXPECTED)
    if check == "function":
        return check_inbound_function(model, 30)
    if check == "service":
        return check_connector_service(model, HEALTH)
    if check == "iam":
        return check_iam(model, STAR_OK)
    if check == "logs":
        return check_log_groups(model)
    if check == "alarms":
        return check_alarms(model)
    if check == "variables":
        return check_variables(model, {"size"})
    raise AssertionError(check)


VALID = [
    (QUEUES, "queues"),
    (TABLE, "tables"),
    (FUNCTION, "function"),
    (SERVICE, "service"),
    (IAM, "iam"),
    (
        'resource "aws_cloudwatch_log_group" "g" {\n  retention_in_days = 90\n  kms_key_id = aws_kms_key.k.arn\n}\n',
        "logs",
    ),
    (ALARMS, "alarms"),
    (VARIABLES, "variables"),
]


@pytest.mark.parametrize(("text", "check"), VALID, ids=[c for _, c in VALID])
def test_valid_snippet_passes(text: str, check: str) -> None:
    assert problems_of(text, check) == []


# (base snippet, check, replace this, with that, a word the problem must contain)
BROKEN = [
    (QUEUES, "queues", '"x-main.fifo"', '"x-main"', ".fifo"),
    (QUEUES, "queues", "fifo_queue = true", "fifo_queue = false", "fifo_queue"),
    (QUEUES, "queues", "maxReceiveCount     = 5", "maxReceiveCount = 50", "maxReceiveCount"),
    (QUEUES, "queues", "deadLetterTargetArn = aws_sqs_queue.dlq.arn", 'deadLetterTargetArn = "arn:x"', "target"),
    (QUEUES, "queues", "sourceQueueArns   = [aws_sqs_queue.main.arn]", "sourceQueueArns = []", "byQueue"),
    (QUEUES, "queues", "queue_url = aws_sqs_queue.dlq.id", "queue_url = aws_sqs_queue.main.id", "allow"),
    (QUEUES + LONE_QUEUE, "queues", "", "", "neither"),
    (TABLE, "tables", 'attribute_name = "expiration"', 'attribute_name = "ttl"', "TTL"),
    (TABLE, "tables", "enabled        = true", "enabled = false", "TTL"),
    (TABLE, "tables", "recovery {\n    enabled = true", "recovery {\n    enabled = false", "point"),
    (TABLE, "tables", "kms_key_arn = aws_kms_key.this.arn", 'kms_key_arn = "alias/aws/dynamodb"', "KMS"),
    (TABLE, "tables", '"PAY_PER_REQUEST"', '"PROVISIONED"', "on demand"),
    (TABLE, "tables", 'hash_key     = "id"', 'hash_key = "pk"', "hash_key"),
    (FUNCTION, "function", '["ReportBatchItemFailures"]', "[]", "ReportBatchItemFailures"),
    (FUNCTION, "function", "batch_size              = 10", "batch_size = 20", "batch_size"),
    (FUNCTION, "function", "scaling_config {\n    maximum_concurrency = 20\n  }", "", "maximum_concurrency"),
    (FUNCTION, "function", "visibility_timeout_seconds = 180", "visibility_timeout_seconds = 60", "6 x"),
    (FUNCTION, "function", "timeout       = 30", "timeout = 31", "timeout"),
    (FUNCTION, "function", '"python3.11"', '"python3.12"', "runtime"),
    (FUNCTION, "function", '["arm64"]', '["x86_64"]', "arm64"),
    (SERVICE, "service", "desired_count                      = 1", "desired_count = 2", "desired_count"),
    (SERVICE, "service", "deployment_maximum_percent         = 100", "deployment_maximum_percent = 200", "maximum"),
    (SERVICE, "service", "healthy_percent = 0", "healthy_percent = 100", "minimum"),
    (SERVICE, "service", "enable   = true", "enable = false", "circuit breaker"),
    (SERVICE, "service", '"connector.healthcheck"]', '"http.server"]', "health check"),
    (IAM, "iam", '["sqs:SendMessage"]', '["sqs:*"]', "wildcard action"),
    (IAM, "iam", "resources = [aws_sqs_queue.main.arn]", 'resources = ["*"]', "Resource '*'"),
    (IAM, "iam", "resources = [aws_sqs_queue.main.arn]", 'resources = ["arn:aws:sqs:*:*:x"]', "wildcard resource"),
    (IAM, "iam", '["ssmmessages:OpenDataChannel"]', '["ssmmessages:OpenDataChannel", "s3:GetObject"]', "s3:GetObject"),
    (IAM, "iam", "policy = data.aws_iam_policy_document.p.json", 'policy = jsonencode({ Statement = [] })', "cannot"),
    (IAM, "iam", 'identifiers = ["arn:aws:iam::123456789012:root"]', 'identifiers = ["*"]', "principal"),
    (IAM, "iam", 'actions   = ["kms:Decrypt"]', 'actions = ["kms:*"]', "wildcard action"),
    (
        IAM + 'resource "aws_iam_role_policy_attachment" "a" {\n  policy_arn = "arn:aws:iam::aws:policy/Admin"\n}\n',
        "iam",
        "",
        "",
        "managed",
    ),
    ('resource "aws_cloudwatch_log_group" "g" {\n  kms_key_id = aws_kms_key.k.arn\n}\n', "logs", "", "", "retention"),
    (ALARMS, "alarms", 'for_each      = { main = aws_sqs_queue.dlq.name }', 'for_each = {}', "DLQ"),
    (ALARMS, "alarms", 'metric_name   = "Errors"', 'metric_name = "Throttles"', "Errors"),
    (ALARMS, "alarms", "{ ServiceName = aws_ecs_service.s.name }", "{}", "RunningTaskCount"),
    (ALARMS, "alarms", "alarm_actions = [aws_sns_topic.t.arn]\n}\nresource \"aws_cloudwatch_metric_alarm\" \"errors\"",
     "alarm_actions = []\n}\nresource \"aws_cloudwatch_metric_alarm\" \"errors\"", "SNS"),
    (VARIABLES, "variables", '  description = "How many."\n', "", "description"),
    (VARIABLES, "variables", "  type        = number\n", "", "type"),
    (VARIABLES, "variables", VALIDATION_BLOCK, "", "validation"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("base", "check", "old", "new", "word"), BROKEN, ids=[f"{b[1]}-{i}" for i, b in enumerate(BROKEN)]
)
def test_broken_snippet_is_reported(base: str, check: str, old: str, new: str, word: str) -> None:
    assert old in base, "the snippet changed: update this test"
    problems = problems_of(base.replace(old, new, 1), check)
    assert problems, "the check did not notice"
    assert any(word.lower() in p.lower() for p in problems), problems


def test_env_check_reports_unset_and_stale_names() -> None:
    assert check_env("c", {"A", "B"}, {"A"}, {"B": "left at its default because ..."}) == []
    assert any("reads B" in p for p in check_env("c", {"A", "B"}, {"A"}, {}))
    assert any("does not read" in p for p in check_env("c", {"A"}, {"A"}, {"Z": "a reason long enough"}))
    assert any("without a reason" in p for p in check_env("c", {"A", "B"}, {"A"}, {"B": "x"}))


def test_evaluator_does_not_guess() -> None:
    model = Model.from_text('locals {\n  x = upper("a")\n  y = local.missing\n}\n')
    with pytest.raises(Unresolved):
        model.local("x")
    with pytest.raises(Unresolved):
        model.local("y")


def test_a_changed_spec_makes_resources_json_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    committed = resources.TERRAFORM_RESOURCES_JSON.read_text()
    assert committed == resources.terraform_resources_json()
    changed = resources.TableSpec("IDEMPOTENCY_TABLE", "wa-relay-idempotency", hash_key="id", ttl_attribute="ttl")
    monkeypatch.setattr(resources, "TABLES", (resources.AUTH_TABLE, resources.LID_MAP_TABLE, changed))
    assert committed != resources.terraform_resources_json()
