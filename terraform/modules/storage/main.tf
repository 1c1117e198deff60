# The artifact and event-log bucket (the `RECSYS_STORE`, reached as s3://BUCKET/recsys through
# the S3-compatible XML API with HMAC keys), plus the bucket that receives its access logs.

locals {
  data_bucket_name = "${var.project_id}-${var.name_prefix}-data"
  log_bucket_name  = "${var.project_id}-${var.name_prefix}-access-logs"
}

resource "google_storage_bucket" "data" {
  project                     = var.project_id
  name                        = local.data_bucket_name
  location                    = var.location
  labels                      = var.labels
  force_destroy               = var.force_destroy
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = google_storage_bucket.access_logs.name
    log_object_prefix = local.data_bucket_name
  }

  # A replaced manifest or bundle file stays recoverable for a while, then goes.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Old run logs and dead-letter files.
  lifecycle_rule {
    condition {
      age            = var.run_log_retention_days
      matches_prefix = [var.run_log_prefix]
      with_state     = "ANY"
    }
    action {
      type = "Delete"
    }
  }

  # boto3 uploads large files in parts; parts of an upload that died are not kept.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This is the access-log sink itself; logging its own access would loop.
  project                     = var.project_id
  name                        = local.log_bucket_name
  location                    = var.location
  labels                      = var.labels
  force_destroy               = var.force_destroy
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age        = var.access_log_retention_days
      with_state = "ANY"
    }
    action {
      type = "Delete"
    }
  }
}

# Cloud Storage writes usage logs as this Google group; with uniform bucket-level access it
# needs object creation on the log bucket and nothing else.
resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket_iam_member" "data" {
  for_each = var.bucket_iam

  bucket = google_storage_bucket.data.name
  role   = each.value.role
  member = each.value.member
}

# S3-compatible credentials for boto3. The key acts as its service account, so what it may do
# is exactly what bucket_iam grants that account.
resource "google_storage_hmac_key" "main" {
  for_each = var.hmac_service_accounts

  project               = var.project_id
  service_account_email = each.value
}
