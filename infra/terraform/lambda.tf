# The inbound function: SQS FIFO batch -> dedup -> LID resolution -> chatbot -> replies on the outbound queue.
# The zip is built for the Lambda platform (manylinux aarch64, CPython 3.11) by `make package`; runtime and
# architecture below must match it.

locals {
  # Every variable InboundConfig.from_env reads that is not left at its default (tests/infra derives the list from
  # the code and fails on a variable that is neither here nor in its reasoned list of defaults).
  inbound_environment = {
    CHATBOT_URL = var.chatbot_url
    # The secret's ARN, never its value: the function fetches it at cold start (an env var value would be readable
    # by anyone with lambda:GetFunctionConfiguration).
    CHATBOT_SECRET_ARN             = aws_secretsmanager_secret.chatbot_secret.arn
    (local.queues.outbound.env)    = aws_sqs_queue.outbound.url
    (local.queues.inbound.env)     = aws_sqs_queue.inbound.url
    (local.queues.inbound.dlq_env) = aws_sqs_queue.inbound_dlq.url
    (local.tables.idempotency.env) = aws_dynamodb_table.idempotency.name
    (local.tables.lid_map.env)     = aws_dynamodb_table.lid_map.name
    (local.tables.settings.env)    = aws_dynamodb_table.settings.name
    DEDUP_TTL_S                    = tostring(var.dedup_ttl_s)
    CHATBOT_TIMEOUT_S              = tostring(var.chatbot_timeout_s)
    CHATBOT_MAX_ATTEMPTS           = tostring(var.chatbot_max_attempts)
    CHATBOT_OUTAGE_BUDGET_S        = tostring(var.chatbot_outage_budget_s)
    MAX_MESSAGE_AGE_S              = tostring(var.max_message_age_s)
    TYPING_INDICATOR               = tostring(var.typing_indicator)
    READ_RECEIPTS                  = tostring(var.read_receipts)
    POWERTOOLS_SERVICE_NAME        = "wa-relay"
  }
}

resource "aws_lambda_function" "inbound" {
  #checkov:skip=CKV_AWS_116:SQS-triggered: failed records go to the inbound queue's own DLQ (redrive policy); a function-level DLQ is only used for asynchronous invocations.
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs and a public HTTPS chatbot; a VPC would add NAT or endpoints and cold-start cost for no isolation gain.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the event source mapping's maximum_concurrency; reserved concurrency would take from the account pool and fails on new accounts whose limit is 10.
  #checkov:skip=CKV_AWS_272:The zip is built by `make package` in CI and deployed by Terraform; no AWS Signer profile is part of this stack.
  #checkov:skip=CKV_AWS_50:X-Ray tracing needs xray:PutTraceSegments with Resource "*", which the no-wildcard IAM rule forbids; logs carry the correlation ids instead.
  function_name = local.inbound_function_name
  description   = "wa-relay inbound: SQS FIFO -> chatbot -> replies"
  role          = aws_iam_role.inbound.arn

  filename         = local.inbound_package_path
  source_code_hash = filebase64sha256(local.inbound_package_path)
  handler          = "functions.inbound.handler.lambda_handler"
  runtime          = "python3.11"
  architectures    = ["arm64"]

  # The same number the queue's visibility timeout is derived from (connector/resources.py).
  timeout     = local.inbound_function_timeout
  memory_size = 512

  # Encrypts the environment at rest with the CMK (it holds names and URLs, no secret).
  kms_key_arn = aws_kms_key.this.arn

  environment {
    variables = local.inbound_environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.inbound.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [aws_iam_role_policy.inbound]

  lifecycle {
    precondition {
      # One chatbot attempt, the reserve kept for the AWS calls after the answer, and a second to start in.
      condition     = var.chatbot_timeout_s + local.inbound_reserve_s + 1 <= local.inbound_function_timeout
      error_message = "chatbot_timeout_s plus the function's reserve (connector/resources.py INBOUND_RESERVE_S) must fit in the function timeout (INBOUND_FUNCTION_TIMEOUT_S)."
    }
  }
}

resource "aws_lambda_event_source_mapping" "inbound" {
  event_source_arn = aws_sqs_queue.inbound.arn
  function_name    = aws_lambda_function.inbound.arn
  # FIFO allows at most 10 and no batching window.
  batch_size = var.inbound_batch_size
  # A failed record fails only itself and the rest of its chat; the other chats of the batch are deleted.
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.inbound_max_concurrency
  }

  lifecycle {
    precondition {
      condition     = aws_sqs_queue.inbound.visibility_timeout_seconds >= 6 * aws_lambda_function.inbound.timeout
      error_message = "The inbound queue's visibility timeout must be at least 6 x the function timeout (AWS guidance; fix connector/resources.py and regenerate resources.json)."
    }
  }
}

# The late-answer function: a chatbot that answered 202 POSTs its replies here (functions/late), signed with the
# chatbot secret; they go to outbound.fifo like an immediate answer's.

locals {
  # Every variable LateConfig.from_env reads (tests/infra derives the list from the code).
  late_environment = {
    CHATBOT_SECRET_ARN             = aws_secretsmanager_secret.chatbot_secret.arn
    (local.queues.outbound.env)    = aws_sqs_queue.outbound.url
    (local.tables.idempotency.env) = aws_dynamodb_table.idempotency.name
    POWERTOOLS_SERVICE_NAME        = "wa-relay"
  }
}

resource "aws_lambda_function" "late" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously through its Function URL: the bot gets the error and posts again; a DLQ only serves asynchronous invocations.
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs; a VPC would add NAT or endpoints and cold-start cost for no isolation gain.
  #checkov:skip=CKV_AWS_115:Reserved concurrency would take from the account pool and fails on new accounts whose limit is 10; a bot posts one answer per 202.
  #checkov:skip=CKV_AWS_272:The zip is built by `make package` in CI and deployed by Terraform; no AWS Signer profile is part of this stack.
  #checkov:skip=CKV_AWS_50:X-Ray tracing needs xray:PutTraceSegments with Resource "*", which the no-wildcard IAM rule forbids; logs carry the event ids instead.
  function_name = local.late_function_name
  description   = "wa-relay late answers: signed POST from the chatbot -> replies"
  role          = aws_iam_role.late.arn

  # The inbound function's zip: it holds both handlers (infra/package.py).
  filename         = local.inbound_package_path
  source_code_hash = filebase64sha256(local.inbound_package_path)
  handler          = "functions.late.handler.lambda_handler"
  runtime          = "python3.11"
  architectures    = ["arm64"]

  # A 2 s wait for a post that overtakes the 202 (functions/late/logic.py), then three short AWS calls.
  timeout     = local.late_function_timeout
  memory_size = 256

  kms_key_arn = aws_kms_key.this.arn

  environment {
    variables = local.late_environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.late.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [aws_iam_role_policy.late]
}

resource "aws_lambda_function_url" "late" {
  #checkov:skip=CKV_AWS_258:The HMAC signature is the authentication (X-Relay-Signature with the chatbot secret, 5 minutes of tolerance, checked before anything is read); the chatbot is any HTTPS client and holds no AWS credentials for AWS_IAM.
  function_name      = aws_lambda_function.late.function_name
  authorization_type = "NONE"
}

# A Function URL with authorization NONE is invoked by anyone: both permissions below are what AWS requires for it
# (lambda:InvokeFunctionUrl, and since October 2025 lambda:InvokeFunction too). The second cannot be limited to
# calls through the URL with hashicorp/aws 5.x (the lambda:InvokedViaFunctionUrl condition needs 6.x's
# invoked_via_function_url): a direct Invoke is then possible as well, and meets the same signature check.
resource "aws_lambda_permission" "late_url" {
  #checkov:skip=CKV_AWS_301:Public by design: a Function URL with authorization NONE whose every request must carry a valid HMAC signature; see the comment above.
  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.late.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "late_invoke" {
  #checkov:skip=CKV_AWS_364:Public by design, like its Function URL: every request must carry a valid HMAC signature; see the comment above.
  #checkov:skip=CKV_AWS_301:Public by design, like its Function URL: every request must carry a valid HMAC signature; see the comment above.
  statement_id  = "FunctionURLInvokeAllowPublicAccess"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.late.function_name
  principal     = "*"
}

# The events function: events.fifo -> a signed POST of each lifecycle or message-status event to var.events_url
# (functions/events). Only with events_url set; the queue, role and log group exist either way (they cost nothing).

locals {
  # Every variable EventsConfig.from_env reads that is not left at its default (tests/infra derives the list).
  events_environment = {
    EVENTS_URL = var.events_url
    # The chatbot's secret: a receiver verifies events and chatbot calls with the same one.
    CHATBOT_SECRET_ARN            = aws_secretsmanager_secret.chatbot_secret.arn
    (local.queues.events.env)     = aws_sqs_queue.events.url
    (local.queues.events.dlq_env) = aws_sqs_queue.events_dlq.url
    POWERTOOLS_SERVICE_NAME       = "wa-relay"
  }
}

resource "aws_lambda_function" "events" {
  #checkov:skip=CKV_AWS_116:SQS-triggered: undeliverable events go to the events queue's own DLQ (redrive policy and the code); a function-level DLQ is only used for asynchronous invocations.
  #checkov:skip=CKV_AWS_117:The function calls only AWS APIs and the receiver's public HTTPS URL; a VPC would add NAT or endpoints and cold-start cost for no isolation gain.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the event source mapping's maximum_concurrency; reserved concurrency would take from the account pool and fails on new accounts whose limit is 10.
  #checkov:skip=CKV_AWS_272:The zip is built by `make package` in CI and deployed by Terraform; no AWS Signer profile is part of this stack.
  #checkov:skip=CKV_AWS_50:X-Ray tracing needs xray:PutTraceSegments with Resource "*", which the no-wildcard IAM rule forbids; logs carry the event ids instead.
  count         = local.events_enabled ? 1 : 0
  function_name = local.events_function_name
  description   = "wa-relay events: SQS FIFO -> signed POST to EVENTS_URL"
  role          = aws_iam_role.events.arn

  # The inbound function's zip: it holds every handler (infra/package.py).
  filename         = local.inbound_package_path
  source_code_hash = filebase64sha256(local.inbound_package_path)
  handler          = "functions.events.handler.lambda_handler"
  runtime          = "python3.11"
  architectures    = ["arm64"]

  # Ten POSTs of EVENTS_TIMEOUT_S (5 s) per session at most, sessions in parallel (connector/resources.py).
  timeout     = local.events_function_timeout
  memory_size = 256

  kms_key_arn = aws_kms_key.this.arn

  environment {
    variables = local.events_environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.events.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [aws_iam_role_policy.events]
}

resource "aws_lambda_event_source_mapping" "events" {
  count            = local.events_enabled ? 1 : 0
  event_source_arn = aws_sqs_queue.events.arn
  function_name    = aws_lambda_function.events[0].arn
  # FIFO's maximum: a batch holds several sessions' events, each session in order.
  batch_size = 10
  # A failed event fails only itself and the rest of its session; the other sessions' events are deleted.
  function_response_types = ["ReportBatchItemFailures"]

  # Events are small and the receiver is one endpoint: two concurrent batches (the minimum) do not flood it.
  scaling_config {
    maximum_concurrency = 2
  }

  lifecycle {
    precondition {
      condition     = aws_sqs_queue.events.visibility_timeout_seconds >= 6 * aws_lambda_function.events[0].timeout
      error_message = "The events queue's visibility timeout must be at least 6 x the function timeout (AWS guidance; fix connector/resources.py and regenerate resources.json)."
    }
  }
}
