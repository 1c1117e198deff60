# The nightly job: a Dataflow Flex Template (one image that is both the template launcher and
# the workers' SDK container) launched by Cloud Scheduler through the Dataflow REST API, plus
# Cloud Run jobs on the same image inside the network: `admin` for one-off commands (`recsys
# rollback`, `recsys items`) and `canary-check`, which Cloud Scheduler runs every hour
# (`recsys canary check`: promote, roll back or wait on the running canary).

locals {
  repository_url = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.main.repository_id}"
  image          = "${local.repository_url}/recsys-batch:${var.image_tag}"
  job_name       = "${var.name_prefix}-nightly"
  bucket_url     = "gs://${google_storage_bucket.main.name}"

  secret_version = { for key, id in var.secret_ids : key => "projects/${var.project_id}/secrets/${id}/versions/latest" }

  # The Cloud Run jobs get the environment the launcher sets up for the pipeline.
  store_environment = merge({ RECSYS_STORE = var.store_uri }, var.s3_environment)

  # The Cloud Run jobs on the image: name suffix -> the `recsys` arguments they run.
  run_jobs = {
    admin          = ["--help"]
    "canary-check" = ["canary", "check", "--min-users", tostring(var.canary_min_users)]
  }

  # Flex Template spec, written by Terraform instead of `gcloud dataflow flex-template build`.
  template_spec = {
    image    = local.image
    sdkInfo  = { language = "PYTHON" }
    metadata = jsondecode(file("${path.module}/../../../app/flex_template/metadata.json"))
  }

  # Body of projects.locations.flexTemplates.launch. Secrets travel as names, never values.
  launch_request = {
    launchParameter = {
      jobName              = local.job_name
      containerSpecGcsPath = "${local.bucket_url}/${google_storage_bucket_object.main.name}"
      # Empty values are left out (e.g. no endpoint override for AWS S3).
      parameters = { for name, value in merge(
        {
          input                        = var.input_uri
          store                        = var.store_uri
          k                            = tostring(var.k)
          s3_endpoint_url              = lookup(var.s3_environment, "AWS_ENDPOINT_URL_S3", "")
          redis_url_secret             = local.secret_version.redis_url
          aws_access_key_id_secret     = local.secret_version.s3_access_key_id
          aws_secret_access_key_secret = local.secret_version.s3_secret_access_key
        },
        var.extra_parameters,
      ) : name => value if value != "" }
      environment = {
        serviceAccountEmail  = var.batch_service_account_email
        tempLocation         = "${local.bucket_url}/temp"
        stagingLocation      = "${local.bucket_url}/staging"
        subnetwork           = var.subnetwork_self_link
        ipConfiguration      = "WORKER_IP_PRIVATE"
        sdkContainerImage    = local.image
        machineType          = var.machine_type
        launcherMachineType  = var.launcher_machine_type
        maxWorkers           = var.max_workers
        additionalUserLabels = var.labels
      }
    }
  }
}

resource "google_artifact_registry_repository" "main" {
  #checkov:skip=CKV_GCP_84:The image holds code and public dependencies only, no data or credentials; Google-managed encryption at rest is enough, and a customer key would be one more key to rotate.
  project                = var.project_id
  location               = var.region
  repository_id          = "${var.name_prefix}-batch"
  description            = "Nightly job image: Flex Template launcher and Dataflow workers"
  format                 = "DOCKER"
  labels                 = var.labels
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "7776000s"
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "batch_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.main.location
  repository = google_artifact_registry_repository.main.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${var.batch_service_account_email}"
}

resource "google_artifact_registry_repository_iam_member" "builder_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.main.location
  repository = google_artifact_registry_repository.main.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${var.builder_service_account_email}"
}

# Template spec, Dataflow staging and temp files, and the Cloud Build source uploads.
resource "google_storage_bucket" "main" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-dataflow"
  location                    = var.region
  labels                      = var.labels
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  logging {
    log_bucket        = var.access_log_bucket
    log_object_prefix = "${var.project_id}-${var.name_prefix}-dataflow"
  }

  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["temp/", "staging/", "cloudbuild-source/"]
      with_state     = "ANY"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_iam_member" "batch" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${var.batch_service_account_email}"
}

resource "google_storage_bucket_iam_member" "scheduler" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${var.scheduler_service_account_email}"
}

resource "google_storage_bucket_iam_member" "builder" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${var.builder_service_account_email}"
}

resource "google_storage_bucket_object" "main" {
  bucket       = google_storage_bucket.main.name
  name         = "templates/nightly.json"
  content_type = "application/json"
  content      = jsonencode(local.template_spec)
}

resource "google_cloud_scheduler_job" "main" {
  project          = var.project_id
  region           = var.region
  name             = local.job_name
  description      = "Launches the nightly Flex Template (train, gate, export, publish)"
  schedule         = var.schedule
  time_zone        = var.time_zone
  paused           = var.paused
  attempt_deadline = "180s"

  # A launch that timed out may still have started a job: never send it twice. A launch while
  # the previous night's job still runs fails, because the job name is taken.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project_id}/locations/${var.region}/flexTemplates:launch"
    body        = base64encode(jsonencode(local.launch_request))
    headers = {
      "Content-Type" = "application/json"
    }

    oauth_token {
      service_account_email = var.scheduler_service_account_email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_storage_bucket_iam_member.scheduler]
}

# `recsys` commands against the deployed Redis and store, from inside the network. admin, for
# one-off commands:
#   gcloud run jobs execute <prefix>-admin --region R --args=rollback,VERSION --wait
#   gcloud run jobs execute <prefix>-admin --region R --args=items,--unavailable,SKU --wait
#   gcloud run jobs execute <prefix>-admin --region R --args=items,--items,s3://B/recsys/items.csv
# canary-check, run by its scheduler job below (its arguments fixed: the scheduler may run it,
# not change what it does).
resource "google_cloud_run_v2_job" "main" {
  for_each = local.run_jobs

  project             = var.project_id
  location            = var.region
  name                = "${var.name_prefix}-${each.key}"
  labels              = var.labels
  deletion_protection = false

  template {
    task_count = 1

    template {
      service_account = var.batch_service_account_email
      max_retries     = 0
      timeout         = "900s"

      vpc_access {
        connector = var.vpc_connector_id
        egress    = "PRIVATE_RANGES_ONLY"
      }

      containers {
        image   = local.image
        command = ["recsys"]
        args    = each.value

        resources {
          limits = {
            cpu    = "1"
            memory = "2Gi"
          }
        }

        dynamic "env" {
          for_each = local.store_environment
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = {
            REDIS_URL             = var.secret_ids.redis_url
            AWS_ACCESS_KEY_ID     = var.secret_ids.s3_access_key_id
            AWS_SECRET_ACCESS_KEY = var.secret_ids.s3_secret_access_key
          }
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  depends_on = [google_artifact_registry_repository_iam_member.batch_reader]
}

# The admin job was the module's only Cloud Run job before canary-check joined it.
moved {
  from = google_cloud_run_v2_job.main
  to   = google_cloud_run_v2_job.main["admin"]
}

# The scheduler may run the canary-check job (run.jobs.run), not change it nor run it with
# other arguments (that needs run.jobs.runWithOverrides, which run.invoker lacks).
resource "google_cloud_run_v2_job_iam_member" "scheduler" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.main["canary-check"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.scheduler_service_account_email}"
}

# `recsys canary check` on canary_check_schedule: builds the running canary's report, then
# promotes it, rolls it back or waits (docs/EXPERIMENTS.md); with no canary running it says so
# and exits 0. No retries: the next check is one schedule away, and a run that timed out may
# still be running.
resource "google_cloud_scheduler_job" "canary_check" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-canary-check"
  description      = "Runs the canary-check Cloud Run job: promote, roll back or keep the running canary"
  schedule         = var.canary_check_schedule
  time_zone        = var.time_zone
  paused           = var.canary_check_paused
  attempt_deadline = "180s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.main["canary-check"].name}:run"

    oauth_token {
      service_account_email = var.scheduler_service_account_email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler]
}
