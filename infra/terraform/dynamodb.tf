# Keys and the TTL attribute come from connector/resources.py (via resources.json): the code and the local stack
# use the same definitions. On demand: the load follows WhatsApp traffic, which is bursty and small.

resource "aws_dynamodb_table" "auth" {
  name         = "${var.name_prefix}-${local.tables.auth.suffix}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = local.tables.auth.hash_key
  range_key    = local.tables.auth.range_key

  attribute {
    name = local.tables.auth.hash_key
    type = "S"
  }

  attribute {
    name = local.tables.auth.range_key
    type = "S"
  }

  # Only the decrypted-message buffer's items carry the TTL attribute (message plaintext at rest: the connector
  # clears each item once its message is durable, the TTL removes what a crash left behind).
  ttl {
    attribute_name = local.tables.auth.ttl_attribute
    enabled        = true
  }

  # Creds and Signal keys: losing them unlinks every session, hence PITR and deletion protection.
  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}

resource "aws_dynamodb_table" "lid_map" {
  name         = "${var.name_prefix}-${local.tables.lid_map.suffix}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = local.tables.lid_map.hash_key

  attribute {
    name = local.tables.lid_map.hash_key
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}

resource "aws_dynamodb_table" "idempotency" {
  name         = "${var.name_prefix}-${local.tables.idempotency.suffix}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = local.tables.idempotency.hash_key

  attribute {
    name = local.tables.idempotency.hash_key
    type = "S"
  }

  # Set at creation: UpdateTimeToLive cannot be repeated for an hour. The code also treats expired-but-unreaped
  # items as absent (TTL deletes lag), so the TTL only keeps the table small.
  ttl {
    attribute_name = local.tables.idempotency.ttl_attribute
    enabled        = true
  }

  # Cheap, and a restore after an accident avoids a day of re-delivered duplicates.
  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}

# Per-session bot settings (connector/contracts.py SessionSettings): written through the connector's API, read by
# the inbound function. Its own table so the function's read access stops at settings and never reaches the auth
# table's key material.
resource "aws_dynamodb_table" "settings" {
  name         = "${var.name_prefix}-${local.tables.settings.suffix}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = local.tables.settings.hash_key

  attribute {
    name = local.tables.settings.hash_key
    type = "S"
  }

  # Operator-written configuration: a restore after a bad change is worth the few cents.
  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}
