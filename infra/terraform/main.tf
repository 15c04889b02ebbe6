# The names the code uses come from one place: connector/resources.py, exported to resources.json by
# `python -m connector.resources --write-terraform` (tests/infra fails when the two disagree). Table and queue names
# are "${var.name_prefix}-<suffix>", so the default prefix gives exactly the local stack's names (wa-relay-auth,
# wa-relay-inbound.fifo, ...), and the environment variable names the code reads are taken from the same file.
locals {
  resources = jsondecode(file("${path.module}/resources.json"))
  tables    = local.resources.tables
  queues    = local.resources.queues

  inbound_function_name    = "${var.name_prefix}-inbound"
  inbound_function_timeout = var.inbound_function_timeout_s
  inbound_reserve_s        = local.resources.inbound_reserve_s
  inbound_package_path     = coalesce(var.inbound_package_path, "${path.module}/../../dist/lambda/inbound.zip")
  # The late-answer function ships in the inbound function's zip (infra/package.py), with its own handler.
  late_function_name    = "${var.name_prefix}-late"
  late_function_timeout = 15
  # The events function (same zip) exists only with an EVENTS_URL to post to.
  events_enabled          = var.events_url != ""
  events_function_name    = "${var.name_prefix}-events"
  events_function_timeout = local.resources.events_function_timeout_s

  connector_name      = "${var.name_prefix}-connector"
  connector_container = "connector"
  # The API listens on 127.0.0.1 only (CONNECTOR_HOST left at its default): it is reached through ECS Exec + SSM port
  # forwarding, never through the task's network interface, so no security group rule can expose it by mistake.
  connector_port = 8080
  # On EFS (efs.tf): a replacement task finds and replays what the previous one spooled. The image's own SPOOL_DIR
  # (infra/connector/Dockerfile), so the EFS volume is mounted over the directory the image prepared.
  spool_dir = "/var/spool/wa-relay"

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Log group names are fixed here (not taken from the resources) because the KMS key policy must name them and the
  # log groups themselves depend on the key.
  connector_log_group_name = "/ecs/${local.connector_name}"
  inbound_log_group_name   = "/aws/lambda/${local.inbound_function_name}"
  late_log_group_name      = "/aws/lambda/${local.late_function_name}"
  events_log_group_name    = "/aws/lambda/${local.events_function_name}"
  log_group_arns = [
    for name in [
      local.connector_log_group_name, local.inbound_log_group_name, local.late_log_group_name,
      local.events_log_group_name,
    ] :
    "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${name}"
  ]
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}
