# Every alarm goes to one SNS topic (encrypted with the CMK; CloudWatch may use the key, kms.tf).

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]
  dead_letter_queues = {
    inbound  = aws_sqs_queue.inbound_dlq.name
    outbound = aws_sqs_queue.outbound_dlq.name
    events   = aws_sqs_queue.events_dlq.name
  }
}

# Anything in a DLQ is a message that will not be delivered without a human: alarm on the first one.
resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each            = local.dead_letter_queues
  alarm_name          = "${var.name_prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "Messages in ${each.value}: inspect them, fix the cause, then redrive (StartMessageMoveTask)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Partial batch failures are not function errors; this catches crashes, timeouts and cold-start config errors.
resource "aws_cloudwatch_metric_alarm" "inbound_errors" {
  alarm_name          = "${var.name_prefix}-inbound-function-errors"
  alarm_description   = "The inbound function failed (crash, timeout or configuration); see ${local.inbound_log_group_name}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.inbound.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Crashes, timeouts and configuration errors of the late-answer function (its 4xx answers to a bot are not errors).
resource "aws_cloudwatch_metric_alarm" "late_errors" {
  alarm_name          = "${var.name_prefix}-late-function-errors"
  alarm_description   = "The late-answer function failed (crash, timeout or configuration); see ${local.late_log_group_name}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.late.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Crashes, timeouts and configuration errors of the events function (a receiver's 4xx/5xx are not function errors:
# those events are retried or dead-lettered, and the DLQ alarm above covers them).
resource "aws_cloudwatch_metric_alarm" "events_errors" {
  count               = local.events_enabled ? 1 : 0
  alarm_name          = "${var.name_prefix}-events-function-errors"
  alarm_description   = "The events function failed (crash, timeout or configuration); see ${local.events_log_group_name}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.events[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Connector health, part 1: is a task running? A task that fails its health check is replaced, and one that cannot
# start (bad image, missing secret) leaves the count at 0. Missing data means no task reported: breaching.
resource "aws_cloudwatch_metric_alarm" "connector_running" {
  alarm_name        = "${local.connector_name}-not-running"
  alarm_description = "No connector task running for 3 of the last 5 minutes: WhatsApp messages are neither received nor sent. See ${local.connector_log_group_name}."
  namespace         = "ECS/ContainerInsights"
  metric_name       = "RunningTaskCount"
  dimensions        = { ClusterName = aws_ecs_cluster.this.name, ServiceName = aws_ecs_service.connector.name }
  statistic         = "Minimum"
  period            = 60
  # 3 of 5 minutes: also catches a task that keeps failing its health check and being replaced.
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Connector health, part 2: is it consuming replies? A running but stuck connector leaves replies in the outbound
# queue; the chatbot's answers then arrive late or never.
resource "aws_cloudwatch_metric_alarm" "outbound_backlog" {
  alarm_name          = "${local.connector_name}-outbound-backlog"
  alarm_description   = "Replies wait more than 5 minutes in ${aws_sqs_queue.outbound.name}: the connector is not sending."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.outbound.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The inbound side of the same question: the function (or the chatbot behind it) is not keeping up.
resource "aws_cloudwatch_metric_alarm" "inbound_backlog" {
  alarm_name          = "${var.name_prefix}-inbound-backlog"
  alarm_description   = "Inbound events wait more than 5 minutes in ${aws_sqs_queue.inbound.name}: the function or the chatbot is failing or slow."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.inbound.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
