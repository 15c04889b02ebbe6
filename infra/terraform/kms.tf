# One customer-managed key for everything the stack stores: tables, queues, secrets, logs, the EFS spool, the ECR
# repository, the alarm topic and ECS Exec sessions. One key keeps the IAM grants short; the roles may only use it
# through the services they call (kms:ViaService in iam.tf).
resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: tables, queues, secrets, logs, spool"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

# A key policy is a resource policy attached to the key: "Resource = *" in it means "this key" and nothing else
# (tests/infra treats it apart from the identity policies for that reason).
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key itself, and the account root must be able to manage it or the key becomes unmanageable.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key itself; write access is limited to the account (root) and the two service principals below, with conditions.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only value a key policy accepts; it means this key.

  # The account root, so that IAM policies (iam.tf) decide who in the account may use the key. The actions are listed
  # instead of kms:* (no wildcard actions anywhere), covering administration and use.
  statement {
    sid    = "AccountAdministersAndDelegatesToIam"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
  }

  # CloudWatch Logs encrypts the two log groups itself (not through a role), so its service principal needs the key,
  # but only for these log groups (the encryption context names the group).
  statement {
    sid    = "CloudWatchLogsForOurLogGroups"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = local.log_group_arns
    }
  }

  # CloudWatch alarms publish to the encrypted SNS topic as the cloudwatch service, so it needs a data key; only
  # for alarms of this account.
  statement {
    sid    = "CloudWatchAlarmsPublishToTopic"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
