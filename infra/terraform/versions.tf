terraform {
  # 1.9: variable validations may refer to other variables (connector_memory vs connector_cpu).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: Lambda logging_config, ESM scaling_config and the ECS circuit breaker are all there.
      version = "~> 5.80"
    }
    random = {
      # Only for the initial values of the two secrets (secrets.tf).
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Application = "wa-relay", Stack = var.name_prefix }, var.tags)
  }
}
