terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }

  # State lives in a bucket that only the deployers can read: it holds the Redis AUTH string
  # and the HMAC secrets. Each environment has its own prefix in it: `terraform init
  # -backend-config=environments/<env>.gcs.tfbackend -backend-config="bucket=<bucket>"`.
  backend "gcs" {}
}
