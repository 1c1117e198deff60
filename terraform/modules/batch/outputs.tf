output "image_repository" {
  description = "Artifact Registry path to push the nightly job image to (REGION-docker.pkg.dev/PROJECT/REPO)."
  value       = local.repository_url
}

output "image" {
  description = "Full image reference the template, the workers and the admin job use."
  value       = local.image
}

output "bucket" {
  description = "Bucket of the template spec, Dataflow staging/temp files and Cloud Build source uploads."
  value       = google_storage_bucket.main.name
}

output "template_spec_path" {
  description = "gs:// path of the Flex Template spec (for `gcloud dataflow flex-template run`)."
  value       = "${local.bucket_url}/${google_storage_bucket_object.main.name}"
}

output "scheduler_job" {
  description = "Name of the Cloud Scheduler job (`gcloud scheduler jobs run NAME --location REGION` starts a run now)."
  value       = google_cloud_scheduler_job.main.name
}

output "dataflow_job_name" {
  description = "Name every nightly Dataflow job gets."
  value       = local.job_name
}

output "admin_job" {
  description = "Name of the Cloud Run job that runs `recsys` commands inside the network."
  value       = google_cloud_run_v2_job.main["admin"].name
}

output "canary_check_job" {
  description = "Name of the Cloud Run job running `recsys canary check` (`gcloud run jobs execute NAME --region REGION --wait` checks now)."
  value       = google_cloud_run_v2_job.main["canary-check"].name
}

output "canary_check_scheduler_job" {
  description = "Name of the Cloud Scheduler job that runs the canary check on canary_check_schedule."
  value       = google_cloud_scheduler_job.canary_check.name
}
