# One role per component, each with only the actions the code calls, on the resources it uses by ARN. No wildcard
# actions; the only "*" resources are the ones AWS offers no resource-level permission for, each in its own statement
# with the reason (tests/infra allow-lists exactly those actions).
#
# KMS: every table, queue and secret is encrypted with the CMK (kms.tf). Roles may use the key only through the
# services that need it (kms:ViaService), except ECS Exec's session encryption, which the SSM agent does directly.

locals {
  kms_via = {
    sqs            = "sqs.${local.region}.amazonaws.com"
    dynamodb       = "dynamodb.${local.region}.amazonaws.com"
    secretsmanager = "secretsmanager.${local.region}.amazonaws.com"
    ecr            = "ecr.${local.region}.amazonaws.com"
    lambda         = "lambda.${local.region}.amazonaws.com"
  }
  # DynamoDB with a customer-managed key: the caller's principal needs these on the key (via DynamoDB); SQS needs
  # GenerateDataKey to send and Decrypt to receive.
  kms_data_actions = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
}

################################################################################
# Inbound function
################################################################################

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "inbound" {
  name               = "${local.inbound_function_name}-function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "inbound" {
  # What the event source mapping does with the function's role (AWSLambdaSQSQueueExecutionRole minus its "*").
  statement {
    sid       = "ConsumeInboundQueue"
    actions   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
    resources = [aws_sqs_queue.inbound.arn]
  }

  # Replies (SendMessageBatch is authorized as sqs:SendMessage), and malformed records moved to the DLQ by the code.
  statement {
    sid       = "SendRepliesAndDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.outbound.arn, aws_sqs_queue.inbound_dlq.arn]
  }

  # Powertools idempotency: get/put/update/delete of its records; the stored answers (answers.py); the rate limit
  # counters (ratelimit.py: UpdateItem inside TransactWriteItems, which is authorized per contained action).
  statement {
    sid       = "IdempotencyRecords"
    actions   = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.idempotency.arn]
  }

  # functions/inbound/lidmap.py resolves a whole batch with one BatchGetItem.
  statement {
    sid       = "ReadLidMap"
    actions   = ["dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.lid_map.arn]
  }

  # functions/inbound/settings.py: one GetItem per session (cached); nothing else of that table, and nothing of auth.
  statement {
    sid       = "ReadSettings"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.settings.arn]
  }

  statement {
    sid       = "ReadChatbotSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.chatbot_secret.arn]
  }

  statement {
    sid       = "UseKeyViaServices"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      # lambda: the function's environment is encrypted with the key, and decrypted with this role at start.
      values = [local.kms_via.sqs, local.kms_via.dynamodb, local.kms_via.secretsmanager, local.kms_via.lambda]
    }
  }

  # Log streams are created by the runtime with generated names, hence the ":*" (streams of this one group).
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.inbound.arn}:*"]
  }
}

resource "aws_iam_role_policy" "inbound" {
  name   = "inbound"
  role   = aws_iam_role.inbound.id
  policy = data.aws_iam_policy_document.inbound.json
}

################################################################################
# Late-answer function
################################################################################

resource "aws_iam_role" "late" {
  name               = "${local.late_function_name}-function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "late" {
  # Only its own items of the idempotency table: wa-late#<event_id> (functions/late/pending.py), read and claimed.
  # DynamoDB scopes item access by partition-key value with dynamodb:LeadingKeys, the narrowest Terraform can say.
  statement {
    sid       = "PendingLateAnswers"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.idempotency.arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["wa-late#*"]
    }
  }

  # The replies (SendMessageBatch is authorized as sqs:SendMessage).
  statement {
    sid       = "SendReplies"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.outbound.arn]
  }

  statement {
    sid       = "ReadChatbotSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.chatbot_secret.arn]
  }

  statement {
    sid       = "UseKeyViaServices"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.sqs, local.kms_via.dynamodb, local.kms_via.secretsmanager, local.kms_via.lambda]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.late.arn}:*"]
  }
}

resource "aws_iam_role_policy" "late" {
  name   = "late"
  role   = aws_iam_role.late.id
  policy = data.aws_iam_policy_document.late.json
}

################################################################################
# Events function
################################################################################

resource "aws_iam_role" "events" {
  name               = "${local.events_function_name}-function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "events" {
  # What the event source mapping does with the function's role, plus the code's ChangeMessageVisibility (backoff).
  statement {
    sid       = "ConsumeEventsQueue"
    actions   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
    resources = [aws_sqs_queue.events.arn]
  }

  # Events the receiver refuses for good, and malformed ones, are moved to the DLQ by the code.
  statement {
    sid       = "SendDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events_dlq.arn]
  }

  statement {
    sid       = "ReadChatbotSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.chatbot_secret.arn]
  }

  statement {
    sid       = "UseKeyViaServices"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.sqs, local.kms_via.secretsmanager, local.kms_via.lambda]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.events.arn}:*"]
  }
}

resource "aws_iam_role_policy" "events" {
  name   = "events"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

################################################################################
# Connector: task execution role (ECS agent: pull the image, write logs, inject the API key)
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "connector_execution" {
  name               = "${local.connector_name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "connector_execution" {
  # ECR's registry login has no resource-level permissions (AWS: GetAuthorizationToken supports only "*"); the image
  # layers themselves are read from the one repository below.
  statement {
    sid       = "EcrLoginNoResourceLevelPermission"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullConnectorImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.connector.arn]
  }

  statement {
    sid       = "WriteContainerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.connector.arn}:*"]
  }

  statement {
    sid       = "InjectApiKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.connector_api_key.arn]
  }

  statement {
    sid       = "DecryptViaServices"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.secretsmanager, local.kms_via.ecr]
    }
  }
}

resource "aws_iam_role_policy" "connector_execution" {
  name   = "execution"
  role   = aws_iam_role.connector_execution.id
  policy = data.aws_iam_policy_document.connector_execution.json
}

################################################################################
# Connector: task role (what the connector's own code calls)
################################################################################

resource "aws_iam_role" "connector_task" {
  name               = "${local.connector_name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "connector_task" {
  # The auth and lease stores (connector/store/dynamodb/): consistent reads, batched key reads/writes, fenced
  # transactions (TransactWriteItems is authorized per contained action: Put/Update/Delete/ConditionCheck), creds
  # updates, lease get/update/delete, the per-session Query and the boot-time Scan for the session list.
  statement {
    sid = "AuthStore"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DeleteItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.auth.arn]
  }

  statement {
    sid       = "LidMapStore"
    actions   = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.lid_map.arn]
  }

  # connector/store/dynamodb/settings.py: GET and PATCH of /v1/sessions/{id}/settings.
  statement {
    sid       = "SettingsStore"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.settings.arn]
  }

  # The reply log (sent-reply records) shares the idempotency table.
  statement {
    sid       = "ReplyLog"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.idempotency.arn]
  }

  statement {
    sid       = "PublishInbound"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.inbound.arn]
  }

  statement {
    sid       = "ConsumeOutbound"
    actions   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
    resources = [aws_sqs_queue.outbound.arn]
  }

  # Lifecycle and message-status events for EVENTS_URL (connector/publish/events.py), only while events_url is set.
  dynamic "statement" {
    for_each = local.events_enabled ? [1] : []
    content {
      sid       = "PublishEvents"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.events.arn]
    }
  }

  # Malformed outbound bodies are moved to the DLQ by the code.
  statement {
    sid       = "OutboundDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.outbound_dlq.arn]
  }

  statement {
    sid       = "UseKeyViaServices"
    actions   = local.kms_data_actions
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.sqs, local.kms_via.dynamodb]
    }
  }

  # The spool on EFS, through its access point only (IAM authorization is on in the task definition).
  statement {
    sid       = "MountSpool"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.spool.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.spool.arn]
    }
  }

  # ECS Exec (how the admin API is reached: SSM port forwarding). AWS offers no resource-level permissions for these
  # four actions, so Resource must be "*"; only present while enable_execute_command is on.
  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid = "EcsExecNoResourceLevelPermission"
      actions = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      resources = ["*"]
    }
  }

  # The SSM agent decrypts ECS Exec sessions with the CMK (the cluster's execute_command_configuration) itself.
  dynamic "statement" {
    for_each = var.enable_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionKey"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.this.arn]
    }
  }
}

resource "aws_iam_role_policy" "connector_task" {
  name   = "task"
  role   = aws_iam_role.connector_task.id
  policy = data.aws_iam_policy_document.connector_task.json
}
