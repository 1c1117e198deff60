# Cloud Functions (2nd gen) `recommend`, `similar`, `trending`, `events`, `health` and
# `admin-items`, built from one source archive whose root main.py re-exports the handlers of
# functions/main.py. Secrets come
# from Secret Manager as environment variables, each function getting only the keys it checks;
# private-range traffic (Redis) leaves through the VPC connector.

locals {
  functions = {
    recommend = {
      entry_point = "recommend"
      description = "Top-K recommendations for a user from the published version, with live filters."
      ingress     = var.recommend_ingress
      invokers    = var.recommend_invokers
      keys        = var.recommend_key_required ? ["RECSYS_RECOMMEND_KEY"] : []
    }
    events = {
      entry_point = "events"
      description = "Validated interactions into the durable log and the user's recent history."
      ingress     = var.events_ingress
      invokers    = var.events_invokers
      keys        = ["RECSYS_API_KEY"]
    }
    health = {
      entry_point = "health"
      description = "Liveness and the served model version (?warm=1 also loads the user tower)."
      ingress     = var.recommend_ingress
      invokers    = var.recommend_invokers
      keys        = []
    }
    similar = {
      entry_point = "similar_items"
      description = "An item's neighbours (nightly co-occurrence + embedding), with live filters and paging."
      ingress     = var.recommend_ingress
      invokers    = var.recommend_invokers
      keys        = var.recommend_key_required ? ["RECSYS_RECOMMEND_KEY"] : []
    }
    trending = {
      entry_point = "trending_items"
      description = "The most engaged items of a recent window (counters kept by events)."
      ingress     = var.recommend_ingress
      invokers    = var.recommend_invokers
      keys        = var.recommend_key_required ? ["RECSYS_RECOMMEND_KEY"] : []
    }
    "admin-items" = {
      entry_point = "admin_items"
      description = "Item filters: mark items unavailable or available again, set categories."
      ingress     = var.admin_ingress
      invokers    = var.admin_invokers
      keys        = ["RECSYS_ADMIN_KEY"]
    }
  }

  environment = merge(
    {
      RECSYS_STORE                = var.store_uri
      RECSYS_MAX_BODY_BYTES       = tostring(var.max_body_bytes)
      RECSYS_MAX_ADMIN_BODY_BYTES = tostring(var.max_admin_body_bytes)
    },
    var.s3_environment,
    var.extra_environment,
  )

  # Environment variable -> secret and version, read when an instance starts. Every function
  # gets these; the page cursor secret is shared so that any instance verifies any cursor.
  secret_environment = {
    REDIS_URL             = { secret = var.secret_ids.redis_url, version = "latest" }
    AWS_ACCESS_KEY_ID     = { secret = var.secret_ids.s3_access_key_id, version = "latest" }
    AWS_SECRET_ACCESS_KEY = { secret = var.secret_ids.s3_secret_access_key, version = "latest" }
    RECSYS_CURSOR_SECRET  = { secret = var.secret_ids.cursor_secret, version = "latest" }
  }

  # The keys clients send in X-API-Key; a function gets those listed in its `keys`.
  key_environment = {
    RECSYS_API_KEY       = { secret = var.secret_ids.api_key, version = var.api_key_version }
    RECSYS_ADMIN_KEY     = { secret = var.secret_ids.admin_key, version = "latest" }
    RECSYS_RECOMMEND_KEY = { secret = var.secret_ids.recommend_key, version = "latest" }
  }

  invoker_bindings = merge([
    for name, function in local.functions : {
      for member in function.invokers : "${name}/${member}" => { function = name, member = member }
    }
  ]...)

  builder_member = "serviceAccount:${var.builder_service_account_email}"
}

resource "google_storage_bucket" "main" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-function-source"
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
    log_object_prefix = "${var.project_id}-${var.name_prefix}-function-source"
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

# Named by content: a new archive is a new object, and a new object redeploys the functions.
resource "google_storage_bucket_object" "main" {
  bucket = google_storage_bucket.main.name
  name   = "functions/${filemd5(var.source_zip)}.zip"
  source = var.source_zip
}

resource "google_artifact_registry_repository" "main" {
  #checkov:skip=CKV_GCP_84:The images hold code and public dependencies only, no data or credentials; Google-managed encryption at rest is enough, and a customer key would be one more key to rotate.
  project                = var.project_id
  location               = var.region
  repository_id          = "${var.name_prefix}-functions"
  description            = "Containers built from the functions' source"
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
      older_than = "2592000s"
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "main" {
  project    = var.project_id
  location   = google_artifact_registry_repository.main.location
  repository = google_artifact_registry_repository.main.name
  role       = "roles/artifactregistry.writer"
  member     = local.builder_member
}

resource "google_storage_bucket_iam_member" "main" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectViewer"
  member = local.builder_member
}

resource "google_cloudfunctions2_function" "main" {
  #checkov:skip=CKV_GCP_124:Ingress is chosen per environment (recommend_ingress, events_ingress, admin_ingress). With ALLOW_ALL every call still needs run.invoker granted to the listed invokers, and events and admin-items also their key; ALLOW_INTERNAL_AND_GCLB needs a load balancer that this deployment does not create.
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-${each.key}"
  description = each.value.description
  labels      = var.labels

  build_config {
    runtime           = var.runtime
    entry_point       = each.value.entry_point
    service_account   = "projects/${var.project_id}/serviceAccounts/${var.builder_service_account_email}"
    docker_repository = google_artifact_registry_repository.main.id

    source {
      storage_source {
        bucket = google_storage_bucket.main.name
        object = google_storage_bucket_object.main.name
      }
    }
  }

  service_config {
    service_account_email            = var.runtime_service_account_email
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout_seconds
    max_instance_request_concurrency = var.concurrency
    min_instance_count               = lookup(var.min_instances, each.key, 0)
    max_instance_count               = lookup(var.max_instances, each.key, 5)
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    vpc_connector                    = var.vpc_connector_id
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"
    environment_variables            = local.environment

    dynamic "secret_environment_variables" {
      for_each = merge(local.secret_environment, { for key in each.value.keys : key => local.key_environment[key] })
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  depends_on = [
    google_artifact_registry_repository_iam_member.main,
    google_storage_bucket_iam_member.main,
  ]
}

# A 2nd gen function is served by a Cloud Run service of the same name; invoking it takes
# run.invoker on that service.
resource "google_cloud_run_v2_service_iam_member" "main" {
  for_each = local.invoker_bindings

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}
