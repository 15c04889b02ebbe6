output "ecr_repository_url" {
  description = "Push the connector image here, tagged with connector_image_tag."
  value       = try(aws_ecr_repository.connector.repository_url, null)
}

output "ecs_cluster_name" {
  description = "ECS cluster of the connector service."
  value       = try(aws_ecs_cluster.this.name, null)
}

output "ecs_service_name" {
  description = "ECS service running the connector (one task; ECS Exec target for the admin API)."
  value       = try(aws_ecs_service.connector.name, null)
}

output "connector_container_name" {
  description = "Container name inside the connector task (for `aws ecs execute-command --container`)."
  value       = local.connector_container
}

output "connector_port" {
  description = "Port of the connector's admin API inside the task (127.0.0.1 only; reach it with SSM port forwarding)."
  value       = local.connector_port
}

output "connector_log_group" {
  description = "CloudWatch log group of the connector."
  value       = try(aws_cloudwatch_log_group.connector.name, null)
}

output "inbound_function_name" {
  description = "Name of the inbound Lambda function."
  value       = try(aws_lambda_function.inbound.function_name, null)
}

output "inbound_log_group" {
  description = "CloudWatch log group of the inbound function."
  value       = try(aws_cloudwatch_log_group.inbound.name, null)
}

output "late_answer_url" {
  description = "Where a chatbot that answered 202 POSTs its signed late answer (README: The chatbot contract)."
  value       = try(aws_lambda_function_url.late.function_url, null)
}

output "late_function_name" {
  description = "Name of the late-answer Lambda function."
  value       = try(aws_lambda_function.late.function_name, null)
}

output "late_log_group" {
  description = "CloudWatch log group of the late-answer function."
  value       = try(aws_cloudwatch_log_group.late.name, null)
}

output "inbound_queue_url" {
  description = "URL of the inbound FIFO queue (connector -> function)."
  value       = try(aws_sqs_queue.inbound.url, null)
}

output "inbound_dlq_url" {
  description = "URL of the inbound queue's FIFO DLQ."
  value       = try(aws_sqs_queue.inbound_dlq.url, null)
}

output "outbound_queue_url" {
  description = "URL of the outbound FIFO queue (function -> connector)."
  value       = try(aws_sqs_queue.outbound.url, null)
}

output "outbound_dlq_url" {
  description = "URL of the outbound queue's FIFO DLQ."
  value       = try(aws_sqs_queue.outbound_dlq.url, null)
}

output "events_queue_url" {
  description = "URL of the events FIFO queue (connector -> events function -> EVENTS_URL)."
  value       = try(aws_sqs_queue.events.url, null)
}

output "events_dlq_url" {
  description = "URL of the events queue's FIFO DLQ (events the receiver refused, or never took)."
  value       = try(aws_sqs_queue.events_dlq.url, null)
}

output "events_function_name" {
  description = "Name of the events Lambda function (null without events_url)."
  value       = try(aws_lambda_function.events[0].function_name, null)
}

output "auth_table" {
  description = "DynamoDB table of creds, leases and Signal keys."
  value       = try(aws_dynamodb_table.auth.name, null)
}

output "lid_map_table" {
  description = "DynamoDB table of the LID <-> phone number map."
  value       = try(aws_dynamodb_table.lid_map.name, null)
}

output "settings_table" {
  description = "DynamoDB table of per-session bot settings."
  value       = try(aws_dynamodb_table.settings.name, null)
}

output "idempotency_table" {
  description = "DynamoDB table of idempotency and sent-reply records (TTL)."
  value       = try(aws_dynamodb_table.idempotency.name, null)
}

output "connector_api_key_secret_arn" {
  description = "Secrets Manager secret holding the connector API key (`aws secretsmanager get-secret-value --secret-id <arn>`)."
  value       = try(aws_secretsmanager_secret.connector_api_key.arn, null)
}

output "chatbot_secret_arn" {
  description = "Secrets Manager secret holding the chatbot HMAC secret; give its value to the chatbot, or put the chatbot's."
  value       = try(aws_secretsmanager_secret.chatbot_secret.arn, null)
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = try(aws_sns_topic.alarms.arn, null)
}

output "kms_key_arn" {
  description = "The customer-managed KMS key encrypting tables, queues, secrets, logs and the spool."
  value       = try(aws_kms_key.this.arn, null)
}
