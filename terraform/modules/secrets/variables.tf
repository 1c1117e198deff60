variable "project_id" {
  type        = string
  description = "Project that owns the secrets."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of secret ids, e.g. recsys-dev (secrets are <prefix>-api-key, <prefix>-redis-url, ...)."
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every secret."
  default     = {}
}

variable "redis_url" {
  type        = string
  description = "REDIS_URL with the AUTH string and CA (the cache module's redis_url output)."
  sensitive   = true
}

variable "hmac_access_ids" {
  type        = map(string)
  description = "HMAC access ids keyed by role (the storage module's hmac_access_ids output); one secret pair is made per role."
}

variable "hmac_secrets" {
  type        = map(string)
  description = "HMAC secrets keyed by the same roles as hmac_access_ids (the storage module's hmac_secrets output)."
  sensitive   = true
}

variable "accessors" {
  type = map(object({
    member  = string
    secrets = list(string)
  }))
  description = <<-EOT
    Who may read which secret, keyed by a static name. Secret keys: api_key, admin_key,
    recommend_key, cursor_secret, redis_url, <role>_s3_access_key_id and
    <role>_s3_secret_access_key for each role of hmac_access_ids.
    Example: functions = { member = "serviceAccount:...", secrets = ["api_key", "redis_url"] }.
  EOT
  default     = {}
}
