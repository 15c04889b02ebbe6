################################################################################
# Naming and placement
################################################################################

variable "name_prefix" {
  description = "Prefix of every resource name (<prefix>-auth, <prefix>-inbound.fifo, ...). The default gives exactly the names the code and the local stack use by default."
  type        = string
  default     = "wa-relay"

  validation {
    # Lowercase so it is valid in every service's names; 32 characters keeps the longest derived IAM role name
    # ("<prefix>-connector-execution") within IAM's 64.
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-32 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-central-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as eu-central-1."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

################################################################################
# Artifacts
################################################################################

variable "connector_image_tag" {
  description = "Tag of the connector image in the ECR repository this stack creates (aws_ecr_repository.connector). Tags are immutable, so use a version or a commit id, not 'latest'."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.connector_image_tag)) && var.connector_image_tag != "latest"
    error_message = "connector_image_tag must be a valid image tag (1-128 characters of A-Z a-z 0-9 _ . -) other than 'latest': the repository's tags are immutable."
  }
}

variable "connector_architecture" {
  description = "CPU architecture of the connector task; must match the image (infra/connector/Dockerfile is built with --platform linux/arm64 by default: Graviton is cheaper on Fargate). X86_64 for an amd64 image."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.connector_architecture)
    error_message = "connector_architecture must be X86_64 or ARM64."
  }
}

variable "inbound_package_path" {
  description = "The inbound function's zip, built for the Lambda platform by `make package`. null means dist/lambda/inbound.zip at the repository root."
  type        = string
  default     = null

  validation {
    condition     = var.inbound_package_path == null || endswith(coalesce(var.inbound_package_path, "x.zip"), ".zip")
    error_message = "inbound_package_path must be the path of a .zip file."
  }
}

################################################################################
# Network (the connector only makes outbound connections: WhatsApp and AWS APIs)
################################################################################

variable "vpc_id" {
  description = "VPC of the connector task and its EFS spool."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets (of vpc_id) for the connector task and the EFS mount targets. They need egress to the internet on 443: public subnets with assign_public_ip = true, or private subnets with a NAT gateway."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids must be a non-empty list of subnet ids (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give the connector task a public IP: true in public subnets (no NAT needed), false in private subnets with a NAT gateway."
  type        = bool
  default     = false
}

################################################################################
# Application settings
################################################################################

variable "chatbot_url" {
  description = "The chatbot endpoint the inbound function POSTs to (CHATBOT_URL). HTTPS only: the body carries message text."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s/]+", var.chatbot_url))
    error_message = "chatbot_url must be an https:// URL."
  }
}

variable "wa_websocket_url" {
  description = "Baileys waWebSocketUrl (WA_WEBSOCKET_URL); \"\" means WhatsApp itself. The task's security group allows egress on 443 only."
  type        = string
  default     = ""

  validation {
    condition     = var.wa_websocket_url == "" || can(regex("^wss?://", var.wa_websocket_url))
    error_message = "wa_websocket_url must be empty or a ws:// or wss:// URL."
  }
}

variable "events_url" {
  description = "Where the events function POSTs lifecycle and message-status events (EVENTS_URL), signed with the chatbot secret. \"\" = no events function and no events published. HTTPS only: QR references are in the bodies."
  type        = string
  default     = ""

  validation {
    condition     = var.events_url == "" || can(regex("^https://[^\\s/]+", var.events_url))
    error_message = "events_url must be empty or an https:// URL."
  }
}

variable "dedup_ttl_s" {
  description = "How long an inbound event_id and a sent reply are remembered (DEDUP_TTL_S), in seconds."
  type        = number
  default     = 86400

  validation {
    condition     = var.dedup_ttl_s >= 60 && floor(var.dedup_ttl_s) == var.dedup_ttl_s
    error_message = "dedup_ttl_s must be a whole number of seconds, at least 60."
  }
}

variable "typing_indicator" {
  description = "Show the contact \"typing…\" while the chatbot works on their message (TYPING_INDICATOR of the inbound function)."
  type        = bool
  default     = true
}

variable "read_receipts" {
  description = "Mark the contact's message read when its reply is sent (READ_RECEIPTS of the inbound function)."
  type        = bool
  default     = true
}

variable "session_start_interval_s" {
  description = "Minimum seconds between two WhatsApp connects of the connector (SESSION_START_INTERVAL_S; jitter is added)."
  type        = number
  default     = 3

  validation {
    condition     = var.session_start_interval_s >= 0
    error_message = "session_start_interval_s must not be negative."
  }
}

variable "log_level" {
  description = "Connector log level (LOG_LEVEL). Message text and keys are only logged at DEBUG/TRACE."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be one of TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL."
  }
}

################################################################################
# Inbound function
################################################################################

variable "inbound_batch_size" {
  description = "Records per inbound function invocation (FIFO event source mappings allow at most 10). Independent of the chatbot timeout: a batch's chats are answered in parallel, and a record of a chat whose earlier records used up the invocation's time is retried at once by the next invocation, the bot not asked."
  type        = number
  default     = 10

  validation {
    condition     = var.inbound_batch_size >= 1 && var.inbound_batch_size <= 10 && floor(var.inbound_batch_size) == var.inbound_batch_size
    error_message = "inbound_batch_size must be a whole number from 1 to 10."
  }
}

variable "inbound_function_timeout_s" {
  description = "The inbound function's timeout in seconds; the inbound queue's visibility timeout is six times it. It must hold one whole chatbot call plus the function's reserve (checked on the function). The local stack uses the code's value (connector/resources.py INBOUND_FUNCTION_TIMEOUT_S), which is this default."
  type        = number
  default     = 60

  validation {
    # 12 h of visibility (6 x 7200 s) is SQS's maximum; Lambda's own limit is 900 s.
    condition     = var.inbound_function_timeout_s >= 10 && var.inbound_function_timeout_s <= 900 && floor(var.inbound_function_timeout_s) == var.inbound_function_timeout_s
    error_message = "inbound_function_timeout_s must be a whole number from 10 to 900 seconds."
  }
}

variable "chatbot_timeout_s" {
  description = "Seconds the inbound function waits for one chatbot answer (CHATBOT_TIMEOUT_S). A call that times out is not repeated in the same invocation (the bot may still be answering); a bot that needs longer answers 202 and replies later."
  type        = number
  default     = 30

  validation {
    condition     = var.chatbot_timeout_s >= 1 && var.chatbot_timeout_s <= 600
    error_message = "chatbot_timeout_s must be from 1 to 600 seconds (and, with the function's reserve, fit in its timeout: checked on the function)."
  }
}

variable "chatbot_max_attempts" {
  description = "Chatbot attempts per invocation for answers that are certain failures (5xx, 429, connection refused), CHATBOT_MAX_ATTEMPTS. Needs no check against the function timeout: an attempt starts only when its whole chatbot_timeout_s fits in the time left."
  type        = number
  default     = 3

  validation {
    condition     = var.chatbot_max_attempts >= 1 && var.chatbot_max_attempts <= 10 && floor(var.chatbot_max_attempts) == var.chatbot_max_attempts
    error_message = "chatbot_max_attempts must be a whole number from 1 to 10."
  }
}

variable "chatbot_outage_budget_s" {
  description = "How long an inbound message keeps being retried (with growing delays, without burning SQS receives) while the chatbot or AWS fails, before it goes to the inbound DLQ with its reason (CHATBOT_OUTAGE_BUDGET_S)."
  type        = number
  default     = 21600

  validation {
    # The inbound queue keeps a message 4 days (SQS's default retention); a budget past that would lose messages
    # to expiry instead of moving them to the DLQ.
    condition     = var.chatbot_outage_budget_s >= 60 && var.chatbot_outage_budget_s <= 259200
    error_message = "chatbot_outage_budget_s must be from 60 s to 3 days (259200), well inside the inbound queue's 4-day retention."
  }
}

variable "max_message_age_s" {
  description = "A message older than this (by its WhatsApp timestamp) is not answered: skipped before the chatbot is asked, and an answer that comes after an outage made it that old is not sent (MAX_MESSAGE_AGE_S). 0: no limit."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_message_age_s >= 0 && floor(var.max_message_age_s) == var.max_message_age_s
    error_message = "max_message_age_s must be a whole number of seconds, 0 for no limit."
  }
}

variable "inbound_max_concurrency" {
  description = "Most concurrent inbound function invocations the event source mapping starts (FIFO is also bounded by the number of active chats)."
  type        = number
  default     = 20

  validation {
    condition     = var.inbound_max_concurrency >= 2 && var.inbound_max_concurrency <= 1000 && floor(var.inbound_max_concurrency) == var.inbound_max_concurrency
    error_message = "inbound_max_concurrency must be a whole number from 2 to 1000 (the event source mapping's range)."
  }
}

################################################################################
# Connector task
################################################################################

variable "connector_cpu" {
  description = "Fargate CPU units of the connector task."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.connector_cpu)
    error_message = "connector_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "connector_memory" {
  description = "Memory (MiB) of the connector task; Fargate allows 2x to 8x the CPU units (in MiB per 1024 units: 256 → 512-2048, 512 → 1024-4096, ...)."
  type        = number
  default     = 1024

  validation {
    # Cross-variable validation needs Terraform >= 1.9 (versions.tf). An approximation of Fargate's table that
    # rejects the combinations ECS would reject at apply time.
    condition     = var.connector_memory >= 2 * var.connector_cpu && var.connector_memory <= min(8 * var.connector_cpu, 30720)
    error_message = "connector_memory must be between 2 and 8 times connector_cpu (MiB), at most 30720."
  }
}

variable "enable_execute_command" {
  description = "Allow ECS Exec into the connector task: how the admin API is reached (SSM port forwarding to 127.0.0.1:8080), since nothing is exposed on the network."
  type        = bool
  default     = true
}

################################################################################
# Operations
################################################################################

variable "log_retention_days" {
  description = "Retention of the connector's and the function's CloudWatch log groups, in days."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (<name_prefix>-alarms); \"\" = no subscription (subscribe something else to the alarm_topic_arn output)."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }
}

variable "table_deletion_protection" {
  description = "DynamoDB deletion protection on the three tables. Losing the auth table unlinks every WhatsApp session, so only turn it off to destroy the stack."
  type        = bool
  default     = true
}
