variable "project_id" {
  type        = string
  description = "Project that runs the nightly job."
}

variable "region" {
  type        = string
  description = "Region of the Dataflow job, the scheduler job, the image repository and the admin job."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names, e.g. recsys-dev (the Dataflow job is <prefix>-nightly)."
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the bucket, the repository, the admin job and every Dataflow job."
  default     = {}
}

variable "image_tag" {
  type        = string
  description = "Tag of the nightly job image in this module's repository (built from app/flex_template/Dockerfile; see docs/DEPLOY.md)."
}

variable "access_log_bucket" {
  type        = string
  description = "Bucket that receives the staging bucket's access logs (the storage module's access_log_bucket)."
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the staging bucket while it still holds objects."
  default     = false
}

variable "batch_service_account_email" {
  type        = string
  description = "Service account of the Dataflow launcher VM, the workers and the admin job (the iam module's batch account)."
}

variable "scheduler_service_account_email" {
  type        = string
  description = "Service account whose OAuth token the scheduler sends to the Dataflow API (the iam module's scheduler account)."
}

variable "builder_service_account_email" {
  type        = string
  description = "Service account Cloud Build uses to build and push the image (the iam module's builder account)."
}

variable "subnetwork_self_link" {
  type        = string
  description = "Subnetwork of the Dataflow workers (the cache module's subnetwork_self_link); workers get private IPs only."
}

variable "vpc_connector_id" {
  type        = string
  description = "Serverless VPC Access connector of the admin job (the cache module's vpc_connector_id)."
}

variable "input_uri" {
  type        = string
  description = "Interactions the nightly job reads (Parquet/CSV, local path or s3://), passed as the template's `input` parameter."
}

variable "store_uri" {
  type        = string
  description = "RECSYS_STORE, the artifact store the job publishes bundles to, e.g. s3://BUCKET/recsys."
}

variable "s3_environment" {
  type        = map(string)
  description = "boto3 environment for the artifact store (the storage module's s3_environment: AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION, checksum mode); {} for AWS S3."
}

variable "secret_ids" {
  type = object({
    redis_url            = string
    s3_access_key_id     = string
    s3_secret_access_key = string
  })
  description = "Short Secret Manager ids of REDIS_URL and the batch account's HMAC key."
}

variable "k" {
  type        = number
  description = "Recommendations kept per user."
  default     = 100
}

variable "extra_parameters" {
  type        = map(string)
  description = "Further template parameters declared in app/flex_template/metadata.json (e.g. namespace, keep_versions, epochs)."
  default     = {}
}

variable "schedule" {
  type        = string
  description = "Cron schedule of the nightly run, in time_zone."
  default     = "0 3 * * *"
}

variable "time_zone" {
  type        = string
  description = "tz database name the schedule is read in."
  default     = "Etc/UTC"
}

variable "paused" {
  type        = bool
  description = "Create the scheduler job paused (it can still be run by hand)."
  default     = false
}

variable "canary_check_schedule" {
  type        = string
  description = "Cron schedule of `recsys canary check` (promote, roll back or keep the running canary), in time_zone."
  default     = "0 * * * *"
}

variable "canary_check_paused" {
  type        = bool
  description = "Create the canary check's scheduler job paused (the canary-check job can still be run by hand)."
  default     = false
}

variable "canary_min_users" {
  type        = number
  description = "Users every arm of a canary needs before `recsys canary check` may promote it (--min-users)."
  default     = 1000

  validation {
    condition     = var.canary_min_users >= 1 && floor(var.canary_min_users) == var.canary_min_users
    error_message = "canary_min_users must be a whole number of users, at least 1."
  }
}

variable "launcher_machine_type" {
  type        = string
  description = "Machine type of the Flex Template launcher, where training runs (docs/SCALING.md: about 1.3 KB per event and 71 KB per item of driver memory; Dataflow's default launcher, 3.75 GB, runs out near 200,000 users)."
  default     = "n2-highmem-4"
}

variable "machine_type" {
  type        = string
  description = "Machine type of the Dataflow workers."
  default     = "n2-standard-4"
}

variable "max_workers" {
  type        = number
  description = "Ceiling of Dataflow workers."
  default     = 4
}
