# FIFO both ways: one chat (MessageGroupId = session + chat) is ordered, chats run in parallel. Names, visibility
# timeouts and maxReceiveCount come from connector/resources.py (via resources.json).
#
# content_based_deduplication = false: every sender sets an explicit MessageDeduplicationId (the event_id inbound, a
# hash of event_id + reply index outbound, the body hash for the function's malformed-record DLQ sends).
# High-throughput FIFO (dedup scope and throughput limit per message group): chats are independent, so there is no
# reason to share one queue-wide 300 requests/s.

locals {
  # Longer than the source queues' default 4 days, so an alarm can be acted on after a long weekend.
  dlq_retention_s = 1209600
}

resource "aws_sqs_queue" "inbound_dlq" {
  name                        = "${var.name_prefix}-${local.queues.inbound.dlq_suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = local.dlq_retention_s
  kms_master_key_id           = aws_kms_key.this.arn
}

resource "aws_sqs_queue" "inbound" {
  name                        = "${var.name_prefix}-${local.queues.inbound.suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  # At least 6x the function timeout (AWS guidance for Lambda sources; the ESM below checks it again).
  visibility_timeout_seconds = 6 * local.inbound_function_timeout
  kms_master_key_id          = aws_kms_key.this.arn
  # Lambda long-polls on its own; this only affects other readers (a human with the CLI).
  receive_wait_time_seconds = 20

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.inbound_dlq.arn
    maxReceiveCount     = local.queues.inbound.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "inbound_dlq" {
  queue_url = aws_sqs_queue.inbound_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.inbound.arn]
  })
}

resource "aws_sqs_queue" "outbound_dlq" {
  name                        = "${var.name_prefix}-${local.queues.outbound.dlq_suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = local.dlq_retention_s
  kms_master_key_id           = aws_kms_key.this.arn
}

resource "aws_sqs_queue" "outbound" {
  name                        = "${var.name_prefix}-${local.queues.outbound.suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  # Short on purpose (see OUTBOUND_QUEUE in connector/resources.py): replies held by a dead connector block their chat
  # for this long.
  visibility_timeout_seconds = local.queues.outbound.visibility_timeout_s
  kms_master_key_id          = aws_kms_key.this.arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.outbound_dlq.arn
    maxReceiveCount     = local.queues.outbound.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "outbound_dlq" {
  queue_url = aws_sqs_queue.outbound_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.outbound.arn]
  })
}

# Lifecycle and message-status events for EVENTS_URL (connector -> function): one message group per session. Created
# whether or not events_url is set (an empty queue costs nothing); the connector only publishes, and the function
# only exists, when it is.
resource "aws_sqs_queue" "events_dlq" {
  name                        = "${var.name_prefix}-${local.queues.events.dlq_suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  message_retention_seconds   = local.dlq_retention_s
  kms_master_key_id           = aws_kms_key.this.arn
}

resource "aws_sqs_queue" "events" {
  name                        = "${var.name_prefix}-${local.queues.events.suffix}"
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  # 6x the function timeout (connector/resources.py); a record the receiver did not take is hidden for a backoff by
  # the function itself.
  visibility_timeout_seconds = local.queues.events.visibility_timeout_s
  kms_master_key_id          = aws_kms_key.this.arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dlq.arn
    maxReceiveCount     = local.queues.events.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "events_dlq" {
  queue_url = aws_sqs_queue.events_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}
