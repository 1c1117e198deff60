output "recommend_url" {
  description = "HTTPS URL of the recommend function."
  value       = module.functions.recommend_url
}

output "similar_url" {
  description = "HTTPS URL of the similar function (an item's neighbours)."
  value       = module.functions.similar_url
}

output "trending_url" {
  description = "HTTPS URL of the trending function."
  value       = module.functions.trending_url
}

output "events_url" {
  description = "HTTPS URL of the events function."
  value       = module.functions.events_url
}

output "health_url" {
  description = "HTTPS URL of the health function."
  value       = module.functions.health_url
}

output "admin_items_url" {
  description = "HTTPS URL of the admin-items function (item filters; identity token and admin key)."
  value       = module.functions.admin_items_url
}

output "data_bucket" {
  description = "Artifact and event-log bucket."
  value       = module.storage.data_bucket
}

output "store_uri" {
  description = "RECSYS_STORE of the deployment."
  value       = module.storage.store_uri
}

output "api_key_secret" {
  description = "Secret Manager secret that holds RECSYS_API_KEY (add versions with gcloud)."
  value       = module.secrets.api_key_secret_id
}

output "key_secrets" {
  description = "Secret Manager secrets an operator fills with gcloud: api_key (events), admin_key (admin-items), recommend_key (recommend, if required), cursor_secret (page cursors)."
  value       = { for key in ["api_key", "admin_key", "recommend_key", "cursor_secret"] : key => module.secrets.secret_ids[key] }
}

output "redis_url_secret" {
  description = "Secret Manager secret that holds REDIS_URL."
  value       = module.secrets.secret_ids["redis_url"]
}

output "redis_host" {
  description = "Private address of the Redis instance (reachable only from the network)."
  value       = module.cache.redis_host
}

output "batch_image_repository" {
  description = "Where to push the nightly job image: REGION-docker.pkg.dev/PROJECT/REPO."
  value       = module.batch.image_repository
}

output "batch_bucket" {
  description = "Bucket of the Flex Template spec, Dataflow staging and Cloud Build uploads."
  value       = module.batch.bucket
}

output "builder_service_account" {
  description = "Service account to pass to `gcloud builds submit --service-account`."
  value       = "projects/${var.project_id}/serviceAccounts/${module.iam.builder_email}"
}

output "template_spec_path" {
  description = "gs:// path of the nightly Flex Template spec."
  value       = module.batch.template_spec_path
}

output "scheduler_job" {
  description = "Cloud Scheduler job that launches the nightly run."
  value       = module.batch.scheduler_job
}

output "dataflow_job_name" {
  description = "Name of the nightly Dataflow jobs."
  value       = module.batch.dataflow_job_name
}

output "admin_job" {
  description = "Cloud Run job for `recsys` commands inside the network (rollback, versions)."
  value       = module.batch.admin_job
}

output "canary_check_job" {
  description = "Cloud Run job running `recsys canary check`; the scheduler runs it on canary_check_schedule."
  value       = module.batch.canary_check_job
}

output "monitoring_dashboard" {
  description = "Id of the Cloud Monitoring dashboard (docs/OPERATIONS.md)."
  value       = module.monitoring.dashboard_id
}

output "alert_policies" {
  description = "Cloud Monitoring alert policies keyed by alert (docs/OPERATIONS.md has one section per alert)."
  value       = module.monitoring.alert_policies
}
