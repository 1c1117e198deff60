variable "project_id" {
  type        = string
  description = "Project that owns the buckets and the HMAC keys."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names, e.g. recsys-dev. Bucket names are <project_id>-<name_prefix>-data and -access-logs."
}

variable "location" {
  type        = string
  description = "Bucket location: the region of the functions and the nightly job (e.g. europe-west1), or a multi-region."
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every bucket."
  default     = {}
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the buckets while they still hold objects. Keep false in production."
  default     = false
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days a replaced or deleted object version is kept (for recovery) before it is deleted."
  default     = 30
}

variable "noncurrent_versions_kept" {
  type        = number
  description = "Number of newer versions after which an older noncurrent version is deleted, whatever its age."
  default     = 5
}

variable "run_log_prefix" {
  type        = string
  description = "Object prefix of the nightly run logs and dead-letter files inside the data bucket."
  default     = "recsys/runs/"
}

variable "run_log_retention_days" {
  type        = number
  description = "Days after which objects under run_log_prefix are deleted."
  default     = 90
}

variable "access_log_retention_days" {
  type        = number
  description = "Days the bucket access logs are kept."
  default     = 365
}

variable "bucket_iam" {
  type = map(object({
    role   = string
    member = string
  }))
  description = "Bucket-level grants on the data bucket, keyed by a static name (e.g. functions_reader = { role = \"roles/storage.objectViewer\", member = \"serviceAccount:...\" })."
  default     = {}

  validation {
    condition     = alltrue([for grant in values(var.bucket_iam) : !contains(["allUsers", "allAuthenticatedUsers"], grant.member)])
    error_message = "The data bucket is private: allUsers and allAuthenticatedUsers may not be granted."
  }
}

variable "hmac_service_accounts" {
  type        = map(string)
  description = "Service account emails that get an HMAC key for S3-compatible (boto3) access, keyed by role (e.g. functions, batch)."
  default     = {}
}
