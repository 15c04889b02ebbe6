# Created first on its own (`terraform apply -target=aws_ecr_repository.connector`) so the image can be pushed
# before the service that runs it exists.
resource "aws_ecr_repository" "connector" {
  name = local.connector_name
  # Immutable: a tag always means the same image, so the task definition pins what runs.
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

# Old images are only needed for a rollback; keep the last 20.
resource "aws_ecr_lifecycle_policy" "connector" {
  repository = aws_ecr_repository.connector.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the 20 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 20
      }
      action = { type = "expire" }
    }]
  })
}
