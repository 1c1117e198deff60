output "emails" {
  description = "Service account emails keyed by role: functions, builder, batch, scheduler."
  value       = { for role, account in google_service_account.main : role => account.email }
}

output "members" {
  description = "IAM members (serviceAccount:EMAIL) keyed by role: functions, builder, batch, scheduler."
  value       = { for role, account in google_service_account.main : role => "serviceAccount:${account.email}" }
}

output "functions_email" {
  description = "Email of the functions' runtime service account."
  value       = google_service_account.main["functions"].email
}

output "builder_email" {
  description = "Email of the Cloud Build service account (functions' containers, batch image)."
  value       = google_service_account.main["builder"].email
}

output "batch_email" {
  description = "Email of the nightly job's service account (Dataflow launcher and workers, admin job)."
  value       = google_service_account.main["batch"].email
}

output "scheduler_email" {
  description = "Email of the Cloud Scheduler service account that launches the nightly job."
  value       = google_service_account.main["scheduler"].email
}
