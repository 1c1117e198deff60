output "data_bucket" {
  description = "Name of the artifact and event-log bucket."
  value       = google_storage_bucket.data.name
}

output "store_uri" {
  description = "RECSYS_STORE for boto3 through the S3-compatible endpoint: s3://<data bucket>/recsys."
  value       = "s3://${google_storage_bucket.data.name}/recsys"
}

output "s3_environment" {
  description = "Environment that points boto3 at Cloud Storage's S3-compatible XML API (endpoint, region, checksum mode); the HMAC key comes separately from Secret Manager."
  value = {
    AWS_ENDPOINT_URL_S3 = "https://storage.googleapis.com"
    # Cloud Storage signs with the "auto" region and rejects the default checksum trailers
    # that boto3 sends since 1.36.
    AWS_DEFAULT_REGION               = "auto"
    AWS_REQUEST_CHECKSUM_CALCULATION = "when_required"
    AWS_RESPONSE_CHECKSUM_VALIDATION = "when_required"
  }
}

output "access_log_bucket" {
  description = "Name of the bucket that receives access logs; other modules' buckets log here too."
  value       = google_storage_bucket.access_logs.name
}

output "hmac_access_ids" {
  description = "HMAC access ids (AWS_ACCESS_KEY_ID) keyed by role. Not secret on their own."
  value       = { for role, key in google_storage_hmac_key.main : role => key.access_id }
}

output "hmac_secrets" {
  description = "HMAC secrets (AWS_SECRET_ACCESS_KEY) keyed by role."
  value       = { for role, key in google_storage_hmac_key.main : role => key.secret }
  sensitive   = true
}
