output "secret_ids" {
  description = "Short secret ids keyed by secret key (api_key, admin_key, recommend_key, cursor_secret, redis_url, <role>_s3_access_key_id, <role>_s3_secret_access_key)."
  value       = { for key, secret in local.secrets : key => secret.secret_id }
}

output "latest_versions" {
  description = "Resource names of the latest version of each secret (projects/P/secrets/S/versions/latest), keyed like secret_ids."
  value       = { for key, secret in local.secrets : key => "projects/${var.project_id}/secrets/${secret.secret_id}/versions/latest" }
}

output "api_key_secret_id" {
  description = "Secret id that holds the API key; add versions to it with gcloud (see docs/DEPLOY.md)."
  value       = google_secret_manager_secret.api_key.secret_id
}

output "redis_url_version" {
  description = "Resource name of the REDIS_URL secret version written by this apply; depend on it to wait for the value."
  value       = google_secret_manager_secret_version.redis_url.name
}
