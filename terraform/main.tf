# The one root module: every module wired together. Each environment is a variable file and a
# state prefix (environments/<env>.tfvars, environments/<env>.gcs.tfbackend), not a copy of this
# folder; docs/DEPLOY.md walks through using it.

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  name_prefix = "recsys-${var.environment}"
  labels = {
    app         = "recsys"
    environment = var.environment
    managed_by  = "terraform"
  }
}

module "iam" {
  source = "./modules/iam"

  project_id  = var.project_id
  name_prefix = local.name_prefix
}

module "cache" {
  source = "./modules/cache"

  project_id           = var.project_id
  region               = var.region
  name_prefix          = local.name_prefix
  labels               = local.labels
  redis_tier           = var.redis_tier
  redis_memory_size_gb = var.redis_memory_size_gb

  # The cache kind and, for a cluster, its size (environments/<env>.tfvars; docs/DEPLOY.md).
  cache_type                = var.cache_type
  redis_cluster_shard_count = var.redis_cluster_shard_count
  redis_cluster_node_type   = var.redis_cluster_node_type
  deletion_protection       = !var.force_destroy
}

module "storage" {
  source = "./modules/storage"

  project_id    = var.project_id
  name_prefix   = local.name_prefix
  location      = var.region
  labels        = local.labels
  force_destroy = var.force_destroy

  # The functions only read bundles; the nightly job reads events and writes bundles and logs.
  bucket_iam = {
    functions_reader = { role = "roles/storage.objectViewer", member = module.iam.members["functions"] }
    batch_user       = { role = "roles/storage.objectUser", member = module.iam.members["batch"] }
  }
  hmac_service_accounts = {
    functions = module.iam.functions_email
    batch     = module.iam.batch_email
  }
}

module "secrets" {
  source = "./modules/secrets"

  project_id      = var.project_id
  name_prefix     = local.name_prefix
  labels          = local.labels
  redis_url       = module.cache.redis_url
  hmac_access_ids = module.storage.hmac_access_ids
  hmac_secrets    = module.storage.hmac_secrets
  accessors = {
    functions = {
      member  = module.iam.members["functions"]
      secrets = ["api_key", "admin_key", "recommend_key", "cursor_secret", "redis_url", "functions_s3_access_key_id", "functions_s3_secret_access_key"]
    }
    batch = {
      member  = module.iam.members["batch"]
      secrets = ["redis_url", "batch_s3_access_key_id", "batch_s3_secret_access_key"]
    }
  }
}

module "functions" {
  source = "./modules/functions"

  project_id                    = var.project_id
  region                        = var.region
  name_prefix                   = local.name_prefix
  labels                        = local.labels
  source_zip                    = var.function_source_zip
  access_log_bucket             = module.storage.access_log_bucket
  force_destroy                 = var.force_destroy
  runtime_service_account_email = module.iam.functions_email
  builder_service_account_email = module.iam.builder_email
  vpc_connector_id              = module.cache.vpc_connector_id
  store_uri                     = module.storage.store_uri
  s3_environment                = module.storage.s3_environment
  secret_ids = {
    api_key              = module.secrets.secret_ids["api_key"]
    admin_key            = module.secrets.secret_ids["admin_key"]
    recommend_key        = module.secrets.secret_ids["recommend_key"]
    cursor_secret        = module.secrets.secret_ids["cursor_secret"]
    redis_url            = module.secrets.secret_ids["redis_url"]
    s3_access_key_id     = module.secrets.secret_ids["functions_s3_access_key_id"]
    s3_secret_access_key = module.secrets.secret_ids["functions_s3_secret_access_key"]
  }
  api_key_version        = var.api_key_version
  recommend_invokers     = var.recommend_invokers
  events_invokers        = var.events_invokers
  admin_invokers         = var.admin_invokers
  recommend_ingress      = var.recommend_ingress
  events_ingress         = var.events_ingress
  admin_ingress          = var.admin_ingress
  recommend_key_required = var.recommend_key_required
  min_instances          = { recommend = var.recommend_min_instances, events = 0, health = 0, "admin-items" = 0 }

  # Builds and first starts need the accounts' roles and secret access in place.
  depends_on = [module.iam, module.secrets]
}

module "batch" {
  source = "./modules/batch"

  project_id                      = var.project_id
  region                          = var.region
  name_prefix                     = local.name_prefix
  labels                          = local.labels
  image_tag                       = var.batch_image_tag
  access_log_bucket               = module.storage.access_log_bucket
  force_destroy                   = var.force_destroy
  batch_service_account_email     = module.iam.batch_email
  scheduler_service_account_email = module.iam.scheduler_email
  builder_service_account_email   = module.iam.builder_email
  subnetwork_self_link            = module.cache.subnetwork_self_link
  vpc_connector_id                = module.cache.vpc_connector_id
  input_uri                       = var.nightly_input_uri
  store_uri                       = module.storage.store_uri
  s3_environment                  = module.storage.s3_environment
  secret_ids = {
    redis_url            = module.secrets.secret_ids["redis_url"]
    s3_access_key_id     = module.secrets.secret_ids["batch_s3_access_key_id"]
    s3_secret_access_key = module.secrets.secret_ids["batch_s3_secret_access_key"]
  }
  k           = var.recommendations_per_user
  schedule    = var.nightly_schedule
  time_zone   = var.nightly_time_zone
  paused      = var.nightly_paused
  max_workers = var.dataflow_max_workers

  launcher_machine_type = var.nightly_launcher_machine_type

  # Canary rollouts: each night's version to a share of users, checked every hour.
  extra_parameters      = var.nightly_canary_percent > 0 ? { canary = tostring(var.nightly_canary_percent) } : {}
  canary_check_schedule = var.canary_check_schedule
  canary_check_paused   = var.nightly_paused
  canary_min_users      = var.canary_min_users

  depends_on = [module.iam, module.secrets]
}

module "monitoring" {
  source = "./modules/monitoring"

  project_id            = var.project_id
  name_prefix           = local.name_prefix
  labels                = local.labels
  notification_channels = var.alert_notification_channels
  alerts_enabled        = var.alerts_enabled
}
