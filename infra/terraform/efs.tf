# The connector's spool (SPOOL_DIR) on EFS. The publisher fsyncs an inbound event into the spool before the WhatsApp
# message is acknowledged whenever SQS cannot take it, and replays a spool it finds at start
# (connector/publish/sqs.py). On the task's ephemeral disk those events would be lost with the task; on EFS the
# replacement task (never concurrent: see connector.tf) picks them up. Encrypted at rest with the CMK and in transit
# (TLS, enforced by the file system policy), mounted only through the access point with IAM authorization.

resource "aws_efs_file_system" "spool" {
  # Not in AWS Backup on purpose: the spool holds only events not yet in SQS (normally nothing), and restoring an old
  # spool would replay stale events.
  creation_token = "${var.name_prefix}-spool"
  encrypted      = true
  kms_key_id     = aws_kms_key.this.arn

  tags = { Name = "${var.name_prefix}-spool" }
}

# EFS allows one mount target per availability zone: pick one of the given subnets per zone.
data "aws_subnet" "connector" {
  for_each = toset(var.subnet_ids)
  id       = each.value

  lifecycle {
    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "Every subnet in subnet_ids must belong to vpc_id."
    }
  }
}

locals {
  subnets_by_az  = { for id, subnet in data.aws_subnet.connector : subnet.availability_zone => id... }
  efs_subnet_ids = { for az, ids in local.subnets_by_az : az => sort(ids)[0] }
}

resource "aws_efs_mount_target" "spool" {
  for_each        = local.efs_subnet_ids
  file_system_id  = aws_efs_file_system.spool.id
  subnet_id       = each.value
  security_groups = [aws_security_group.efs.id]
}

# Whatever user the image runs as, files are created as this one (the connector needs no other access).
resource "aws_efs_access_point" "spool" {
  file_system_id = aws_efs_file_system.spool.id

  posix_user {
    uid = 10001
    gid = 10001
  }

  root_directory {
    path = "/spool"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0700"
    }
  }

  tags = { Name = "${var.name_prefix}-spool" }
}

data "aws_iam_policy_document" "efs" {
  statement {
    sid    = "ConnectorThroughAccessPoint"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.connector_task.arn]
    }
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.spool.arn]
    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.spool.arn]
    }
  }

  # Nobody mounts without TLS (the task definition asks for it; this makes it a rule).
  statement {
    sid    = "DenyUnencryptedTransport"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientRootAccess", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.spool.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_efs_file_system_policy" "spool" {
  file_system_id = aws_efs_file_system.spool.id
  policy         = data.aws_iam_policy_document.efs.json
}

resource "aws_security_group" "efs" {
  name        = "${var.name_prefix}-spool-efs"
  description = "EFS mount targets of the connector spool: NFS from the connector task only"
  vpc_id      = var.vpc_id
  # No egress rules: the mount targets answer, they never connect out.
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_connector" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the connector task"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.connector.id
}
