terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }

  # State lives in a bucket that only the deployers can read: it holds the Redis AUTH string
  # and the HMAC secrets. Settings come from `terraform init -backend-config=backend.hcl`
  # (copy backend.hcl.example).
  backend "gcs" {}
}
