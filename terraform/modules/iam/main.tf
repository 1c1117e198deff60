# One service account per role, each with only the project-level roles that have no narrower
# scope. Grants on a single resource (a bucket, a secret, a repository, a function) live in the
# module that owns that resource and take the members exported here.

locals {
  accounts = {
    functions = "Runtime of the recommend and events functions"
    builder   = "Cloud Build: builds the functions' containers and the nightly job image"
    batch     = "Dataflow launcher VM and workers of the nightly job, and the admin job"
    scheduler = "Cloud Scheduler: launches the nightly Flex Template through the Dataflow API"
  }

  # Dataflow, Logging and Monitoring have no resource-level IAM, so these are project-wide.
  project_roles = {
    builder_log_writer    = { account = "builder", role = "roles/logging.logWriter" }
    batch_dataflow_worker = { account = "batch", role = "roles/dataflow.worker" }
    batch_log_writer      = { account = "batch", role = "roles/logging.logWriter" }
    batch_metric_writer   = { account = "batch", role = "roles/monitoring.metricWriter" }
  }
}

resource "google_service_account" "main" {
  for_each = local.accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "${var.name_prefix} ${each.key}"
  description  = each.value
}

resource "google_project_iam_member" "project_roles" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.main[each.value.account].email}"
}

# Launching a Flex Template takes dataflow.jobs.create, which only exists at project level.
resource "google_project_iam_member" "scheduler_launches_jobs" {
  #checkov:skip=CKV_GCP_49:Dataflow has no job-level IAM, so launching jobs needs a project-level role; which account those jobs may run as is limited to the batch account by the service-account-level binding below.
  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = "serviceAccount:${google_service_account.main["scheduler"].email}"
}

# The scheduler launches jobs that run as the batch account: it may act as that one account
# only (not iam.serviceAccountUser on the whole project).
resource "google_service_account_iam_member" "main" {
  service_account_id = google_service_account.main["batch"].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.main["scheduler"].email}"
}
