# The connector: one always-on Fargate task holding the WhatsApp sockets. No load balancer: it only connects out
# (WhatsApp, AWS APIs) and its admin API listens on 127.0.0.1, reached through ECS Exec + SSM port forwarding.

resource "aws_ecs_cluster" "this" {
  #checkov:skip=CKV_AWS_223:ECS Exec is used for port forwarding to the admin API (no command output to keep); CloudTrail records every ExecuteCommand, and exec logging would need logs:DescribeLogGroups on "*".
  name = var.name_prefix

  # Container Insights gives the RunningTaskCount metric the health alarm watches (alarms.tf).
  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      # ECS Exec sessions (admin API port forwarding) are encrypted with the CMK on top of TLS.
      kms_key_id = aws_kms_key.this.arn
      # Not logged: port forwarding has no command output worth keeping, and CloudTrail records every ExecuteCommand
      # call. Logging to CloudWatch would need logs:DescribeLogGroups on "*" for the SSM agent.
      logging = "NONE"
    }
  }
}

resource "aws_security_group" "connector" {
  name        = "${local.connector_name}-task"
  description = "wa-relay connector task: no ingress; HTTPS out (WhatsApp, AWS APIs) and NFS to its spool"
  vpc_id      = var.vpc_id
}

# WhatsApp's websocket and every AWS API are HTTPS. (DNS to the VPC resolver is not filtered by security groups.)
resource "aws_vpc_security_group_egress_rule" "connector_https" {
  security_group_id = aws_security_group.connector.id
  description       = "HTTPS to WhatsApp and AWS APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "connector_nfs" {
  security_group_id            = aws_security_group.connector.id
  description                  = "NFS to the spool's EFS mount targets"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

locals {
  connector_image = "${aws_ecr_repository.connector.repository_url}:${var.connector_image_tag}"

  # Every variable connector/config.py reads that is not left at its default (tests/infra derives the list from the
  # code and fails on one that is neither here nor in its reasoned list of defaults). CONNECTOR_API_KEY comes from
  # Secrets Manager (container "secrets"); AWS_ENDPOINT_URL is deliberately absent (real AWS).
  connector_environment = {
    (local.tables.auth.env)         = aws_dynamodb_table.auth.name
    (local.tables.lid_map.env)      = aws_dynamodb_table.lid_map.name
    (local.tables.idempotency.env)  = aws_dynamodb_table.idempotency.name
    (local.tables.settings.env)     = aws_dynamodb_table.settings.name
    (local.queues.inbound.env)      = aws_sqs_queue.inbound.url
    (local.queues.outbound.env)     = aws_sqs_queue.outbound.url
    (local.queues.outbound.dlq_env) = aws_sqs_queue.outbound_dlq.url
    AWS_REGION                      = local.region
    CONNECTOR_PORT                  = tostring(local.connector_port)
    SESSION_START_INTERVAL_S        = tostring(var.session_start_interval_s)
    DEDUP_TTL_S                     = tostring(var.dedup_ttl_s)
    STORE_BACKEND                   = "dynamodb"
    SPOOL_DIR                       = local.spool_dir
    LOG_LEVEL                       = var.log_level
    # "" = WhatsApp itself: both Config and the bridge (`process.env.WA_WEBSOCKET_URL || undefined`) treat an empty
    # value as unset.
    WA_WEBSOCKET_URL = var.wa_websocket_url
    # "" (unset for Config) without events_url: nothing consumes the queue then, so nothing is published to it.
    (local.queues.events.env) = local.events_enabled ? aws_sqs_queue.events.url : ""
  }
}

# The container, as an HCL object (not inline in jsonencode) so that tests/infra can read it.
locals {
  connector_container_definition = {
    name      = local.connector_container
    image     = local.connector_image
    essential = true

    environment = [for name in sort(keys(local.connector_environment)) : { name = name, value = local.connector_environment[name] }]
    secrets = [
      { name = "CONNECTOR_API_KEY", valueFrom = aws_secretsmanager_secret.connector_api_key.arn },
    ]

    # connector/healthcheck.py: exit 0 iff GET http://127.0.0.1:$CONNECTOR_PORT/healthz answers 200. An unhealthy
    # task is replaced (stopped first: maximum_percent = 100).
    healthCheck = {
      command     = ["CMD", "python", "-m", "connector.healthcheck"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }

    # Read-only root unless ECS Exec is on: the SSM agent ECS Exec injects writes to the container's file system and
    # crashes on a read-only root (aws/containers-roadmap#1359). The connector itself writes only to the spool and /tmp.
    readonlyRootFilesystem = !var.enable_execute_command
    mountPoints = [
      { sourceVolume = "spool", containerPath = local.spool_dir, readOnly = false },
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
    ]

    # Fargate's maximum: time to close the sockets and release the leases on SIGTERM, so the next task can take the
    # sessions over without waiting for the leases to expire.
    stopTimeout = 120

    # ECS Exec runs the SSM agent in the container; an init process reaps what it leaves behind.
    linuxParameters = { initProcessEnabled = true }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.connector.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "connector"
      }
    }
  }
}

resource "aws_ecs_task_definition" "connector" {
  family                   = local.connector_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.connector_cpu
  memory                   = var.connector_memory
  execution_role_arn       = aws_iam_role.connector_execution.arn
  task_role_arn            = aws_iam_role.connector_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.connector_architecture
  }

  volume {
    name = "spool"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.spool.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.spool.id
        iam             = "ENABLED"
      }
    }
  }

  # Task-local scratch space (the root file system is read-only when ECS Exec is off).
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([local.connector_container_definition])
}

resource "aws_ecs_service" "connector" {
  name             = local.connector_name
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.connector.arn
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  # One task owns every session. A deployment (or a replacement) stops the old task before starting the new one
  # (minimum 0 %, maximum 100 %): two tasks with the same WhatsApp credentials would fight over the sockets ("connection
  # replaced") and desynchronise the Signal sessions. The DynamoDB leases with fencing tokens still guard the gap
  # ECS cannot (a zombie task that has not stopped yet): a task that lost its lease can no longer write.
  desired_count                      = 1
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  enable_execute_command = var.enable_execute_command
  propagate_tags         = "SERVICE"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.connector.id]
    assign_public_ip = var.assign_public_ip
  }

  # The mount targets must exist before a task mounts the spool.
  depends_on = [aws_efs_mount_target.spool, aws_iam_role_policy.connector_task, aws_iam_role_policy.connector_execution]
}
