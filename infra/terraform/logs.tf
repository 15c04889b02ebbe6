# Created here (not implicitly by Lambda/ECS) so that they have a retention and the CMK. Retention is a variable with
# a 90-day default: the logs name contacts (JIDs, phone numbers), so a year by default is the wrong trade-off.

resource "aws_cloudwatch_log_group" "connector" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90): the logs hold contacts' phone numbers and JIDs, which should not be kept a year by default; set 365+ where a compliance regime requires it.
  name              = local.connector_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "inbound" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90): the logs hold contacts' phone numbers and JIDs, which should not be kept a year by default; set 365+ where a compliance regime requires it.
  name              = local.inbound_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "late" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90): the logs hold contacts' phone numbers and JIDs, which should not be kept a year by default; set 365+ where a compliance regime requires it.
  name              = local.late_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_log_group" "events" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 90): the logs hold contacts' phone numbers and JIDs, which should not be kept a year by default; set 365+ where a compliance regime requires it.
  name              = local.events_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}
