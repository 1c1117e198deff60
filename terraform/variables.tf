# Three kinds of variables:
# - the environment and its sizing and policy, no default: environments/<env>.tfvars (committed)
#   sets every one, so dev and prod differ only in that file;
# - deployment-specific values, no default: environments/<env>.deployment.tfvars (not
#   committed; copy environments/deployment.tfvars.example);
# - the rest, with defaults either file may override.

# --- the environment: environments/<env>.tfvars

variable "environment" {
  type        = string
  description = "Name of the environment (dev, prod, ...): resources are named recsys-<environment>-... and labelled environment=<environment>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,7}$", var.environment))
    error_message = "environment must be 1-8 lowercase letters or digits, starting with a letter, so that recsys-<environment>-connector fits the connector's 25-character limit."
  }
}

variable "redis_tier" {
  type        = string
  description = "Memorystore tier: BASIC (one node) or STANDARD_HA (replica and failover)."
}

variable "redis_memory_size_gb" {
  type        = number
  description = "Memorystore memory in GiB."
}

variable "cache_type" {
  type        = string
  description = "instance: Memorystore for Redis (redis_tier, redis_memory_size_gb; RDB snapshots). cluster: Memorystore for Redis Cluster (redis_cluster_*; AOF, a replica per shard). docs/DEPLOY.md says which acknowledged events each can lose."
}

variable "redis_cluster_shard_count" {
  type        = number
  description = "Shards of the Redis Cluster when cache_type is cluster (docs/SCALING.md sizes them)."
}

variable "redis_cluster_node_type" {
  type        = string
  description = "Node type of the Redis Cluster when cache_type is cluster, e.g. REDIS_HIGHMEM_MEDIUM."
}

variable "recommend_min_instances" {
  type        = number
  description = "Warm instances of recommend (0 allows cold starts)."
}

variable "nightly_launcher_machine_type" {
  type        = string
  description = "Machine type of the nightly's Flex Template launcher, where the model trains in memory (docs/SCALING.md gives the users each size holds)."
  default     = "n2-highmem-4"
}

variable "alerts_enabled" {
  type        = bool
  description = "Whether the alert policies evaluate. Off by default: nothing carries the functions' and the nightly's metrics to Managed Prometheus yet (docs/OPERATIONS.md, Deployed), so RecsysNoPublish would page at once."
  default     = false
}

variable "dataflow_max_workers" {
  type        = number
  description = "Ceiling of Dataflow workers for the nightly job."
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete buckets that still hold objects."
}

# --- deployment-specific: environments/<env>.deployment.tfvars

variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of every regional resource (functions, Redis, Dataflow, scheduler, buckets), e.g. europe-west1."
}

variable "function_source_zip" {
  type        = string
  description = "Path of the functions' source archive built by `python app/build_function_source.py --out dist/functions.zip`, relative to terraform/ (e.g. ../dist/functions.zip)."
}

variable "batch_image_tag" {
  type        = string
  description = "Tag of the nightly job image pushed to the batch repository (docs/DEPLOY.md, step 7), e.g. the git commit."
}

variable "nightly_input_uri" {
  type        = string
  description = "Interactions the nightly job trains on: an s3:// URI (folder, file or glob) in the data bucket or elsewhere."
}

variable "recommend_invokers" {
  type        = list(string)
  description = "Who may call recommend and health: [\"allUsers\"] for a public endpoint, or members like serviceAccount:app@PROJECT.iam.gserviceaccount.com, group:team@example.com."
}

variable "events_invokers" {
  type        = list(string)
  description = "Who may call events (never public): members like serviceAccount:app@PROJECT.iam.gserviceaccount.com or user:you@example.com."
}

# --- defaults

variable "admin_invokers" {
  type        = list(string)
  description = "Who may call admin-items besides the project's Owners and Editors (never public): members like group:merchandising@example.com; they also need the admin key."
  default     = []
}

variable "recommend_key_required" {
  type        = bool
  description = "recommend answers only requests whose X-API-Key is the recommend_key secret (add a version to it first, docs/DEPLOY.md); false leaves recommend to recommend_invokers."
  default     = false
}

variable "api_key_version" {
  type        = string
  description = "Version of the API key secret the functions read: latest, or the number of the version to switch to when rotating (docs/DEPLOY.md)."
  default     = "latest"
}

variable "recommend_ingress" {
  type        = string
  description = "Network ingress of recommend and health: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  default     = "ALLOW_ALL"
}

variable "events_ingress" {
  type        = string
  description = "Network ingress of events: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  default     = "ALLOW_ALL"
}

variable "admin_ingress" {
  type        = string
  description = "Network ingress of admin-items: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  default     = "ALLOW_ALL"
}

variable "nightly_schedule" {
  type        = string
  description = "Cron schedule of the nightly job, read in nightly_time_zone."
  default     = "0 3 * * *"
}

variable "nightly_time_zone" {
  type        = string
  description = "tz database name of the nightly schedule."
  default     = "Etc/UTC"
}

variable "nightly_paused" {
  type        = bool
  description = "Keep the scheduler job paused (runs only when triggered by hand)."
  default     = false
}

variable "nightly_canary_percent" {
  type        = number
  description = "0: each nightly run serves its version to everyone. 1..50: it serves the new version to that percentage of users only (`recsys nightly --canary`), until the canary check promotes or rolls it back."
  default     = 0

  validation {
    condition     = var.nightly_canary_percent >= 0 && var.nightly_canary_percent <= 50 && floor(var.nightly_canary_percent) == var.nightly_canary_percent
    error_message = "nightly_canary_percent must be a whole percentage from 0 to 50."
  }
}

variable "canary_check_schedule" {
  type        = string
  description = "Cron schedule of `recsys canary check` (promote, roll back or keep the running canary), read in nightly_time_zone."
  default     = "0 * * * *"
}

variable "canary_min_users" {
  type        = number
  description = "Users every arm of a canary needs before the canary check may promote it."
  default     = 1000
}

variable "recommendations_per_user" {
  type        = number
  description = "Length of the list published per user (the nightly job's k)."
  default     = 100
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Notification channels the alert policies notify (docs/OPERATIONS.md), as ids projects/PROJECT/notificationChannels/ID; [] opens incidents in the console only."
  default     = []
}
