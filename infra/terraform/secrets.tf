# Two secrets, encrypted with the CMK. Terraform gives each an initial random value so that a first `terraform apply`
# yields a working stack (the connector refuses to start without an API key, the function without the HMAC secret).
# ignore_changes on the value: replace it out of band (`aws secretsmanager put-secret-value`, e.g. to share a secret
# the chatbot already has) and Terraform will not put the old one back. The initial values are in the Terraform
# state, like every secret Terraform creates: keep the state in an encrypted, access-controlled backend.
# After a change: the connector reads the key at task start (`aws ecs update-service --force-new-deployment`), the
# function at cold start (publish a configuration change or wait for new execution environments).

# Hex (random_id), not random_password: the connector rejects keys that look like placeholders ("todo", "xxxx",
# "example", ...), and a hex string cannot contain one. 32 bytes = 256 bits.
resource "random_id" "connector_api_key" {
  byte_length = 32
}

resource "aws_secretsmanager_secret" "connector_api_key" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda: the key is a bearer token an operator holds; rotate it with put-secret-value and a new deployment (secrets.tf header).
  name                    = "${var.name_prefix}/connector-api-key"
  description             = "Bearer key of the wa-relay connector's admin API (CONNECTOR_API_KEY)."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "connector_api_key" {
  secret_id     = aws_secretsmanager_secret.connector_api_key.id
  secret_string = random_id.connector_api_key.hex

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "random_id" "chatbot_secret" {
  byte_length = 32
}

resource "aws_secretsmanager_secret" "chatbot_secret" {
  #checkov:skip=CKV2_AWS_57:No rotation Lambda: the chatbot must learn the new value at the same time, which is a coordinated manual step (put-secret-value on both sides).
  name                    = "${var.name_prefix}/chatbot-secret"
  description             = "HMAC secret of X-Relay-Signature on requests to the chatbot (read by the inbound function via CHATBOT_SECRET_ARN)."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "chatbot_secret" {
  secret_id     = aws_secretsmanager_secret.chatbot_secret.id
  secret_string = random_id.chatbot_secret.hex

  lifecycle {
    ignore_changes = [secret_string]
  }
}
