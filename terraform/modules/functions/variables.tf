variable "project_id" {
  type        = string
  description = "Project that owns the functions."
}

variable "region" {
  type        = string
  description = "Region of the functions, their source bucket and container repository."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names, e.g. recsys-dev (functions are <prefix>-recommend, <prefix>-events, <prefix>-health and <prefix>-admin-items)."
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the functions, the bucket and the repository."
  default     = {}
}

variable "source_zip" {
  type        = string
  description = "Local path of the source archive built by `python app/build_function_source.py --out dist/functions.zip`."
}

variable "access_log_bucket" {
  type        = string
  description = "Bucket that receives the source bucket's access logs (the storage module's access_log_bucket)."
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the source bucket while it still holds archives."
  default     = false
}

variable "runtime_service_account_email" {
  type        = string
  description = "Service account the functions run as (the iam module's functions account)."
}

variable "builder_service_account_email" {
  type        = string
  description = "Service account Cloud Build uses to turn the source into containers (the iam module's builder account)."
}

variable "vpc_connector_id" {
  type        = string
  description = "Serverless VPC Access connector that routes private-range traffic (Redis) into the network."
}

variable "store_uri" {
  type        = string
  description = "RECSYS_STORE: artifact store URI, e.g. s3://BUCKET/recsys."
}

variable "s3_environment" {
  type        = map(string)
  description = "boto3 environment for the artifact store (the storage module's s3_environment: AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION, checksum mode); {} for AWS S3."
}

variable "secret_ids" {
  type = object({
    api_key              = string
    admin_key            = string
    recommend_key        = string
    cursor_secret        = string
    redis_url            = string
    s3_access_key_id     = string
    s3_secret_access_key = string
  })
  description = "Short Secret Manager ids read into RECSYS_API_KEY (events), RECSYS_ADMIN_KEY (admin-items), RECSYS_RECOMMEND_KEY (recommend, if recommend_key_required), RECSYS_CURSOR_SECRET, REDIS_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (every function)."
}

variable "api_key_version" {
  type        = string
  description = "Version of the API key secret the functions read: latest, or a number. Setting the new number after adding a version starts new revisions that read it (docs/DEPLOY.md, rotating the API key)."
  default     = "latest"
}

variable "recommend_invokers" {
  type        = list(string)
  description = "Who may call recommend and health: [\"allUsers\"] for a public endpoint, or members such as serviceAccount:app@P.iam.gserviceaccount.com."
}

variable "admin_invokers" {
  type        = list(string)
  description = "Who may call admin-items besides the project's Owners and Editors: authenticated members only; the function also checks the X-API-Key header against RECSYS_ADMIN_KEY."

  validation {
    condition     = length(setintersection(toset(var.admin_invokers), toset(["allUsers", "allAuthenticatedUsers"]))) == 0
    error_message = "admin-items changes what is served: it must not be public. List the members (service accounts, groups) that manage items."
  }
}

variable "admin_ingress" {
  type        = string
  description = "Ingress of admin-items: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.admin_ingress)
    error_message = "admin_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "recommend_key_required" {
  type        = bool
  description = "recommend reads RECSYS_RECOMMEND_KEY from the recommend_key secret (which then needs a version) and answers 401 without it in X-API-Key; false leaves recommend to its invokers."
  default     = false
}

variable "max_body_bytes" {
  type        = number
  description = "RECSYS_MAX_BODY_BYTES: largest request body of recommend and events; a larger one gets 413."
  default     = 1048576

  validation {
    condition     = var.max_body_bytes >= 1024 && floor(var.max_body_bytes) == var.max_body_bytes
    error_message = "max_body_bytes must be a whole number of bytes, at least 1024."
  }
}

variable "max_admin_body_bytes" {
  type        = number
  description = "RECSYS_MAX_ADMIN_BODY_BYTES: largest request body of admin-items; a larger one gets 413."
  default     = 16777216

  validation {
    condition     = var.max_admin_body_bytes >= 1024 && floor(var.max_admin_body_bytes) == var.max_admin_body_bytes
    error_message = "max_admin_body_bytes must be a whole number of bytes, at least 1024."
  }
}

variable "events_invokers" {
  type        = list(string)
  description = "Who may call events: authenticated members only; the function also checks the X-API-Key header against RECSYS_API_KEY."

  validation {
    condition     = length(setintersection(toset(var.events_invokers), toset(["allUsers", "allAuthenticatedUsers"]))) == 0
    error_message = "events takes writes: it must not be public. List the members (service accounts, groups) that send events."
  }
}

variable "recommend_ingress" {
  type        = string
  description = "Ingress of recommend and health: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.recommend_ingress)
    error_message = "recommend_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "events_ingress" {
  type        = string
  description = "Ingress of events: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.events_ingress)
    error_message = "events_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime."
  default     = "python311"
}

variable "memory" {
  type        = string
  description = "Memory per instance (the on-demand path loads the item index and the light user tower)."
  default     = "1Gi"
}

variable "cpu" {
  type        = string
  description = "vCPUs per instance."
  default     = "1"
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout in seconds."
  default     = 30
}

variable "concurrency" {
  type        = number
  description = "Requests one instance serves at once."
  default     = 1
}

variable "min_instances" {
  type        = map(number)
  description = "Warm instances kept per function (recommend, events, health, admin-items; a missing one: 0); above 0 removes cold starts at a cost."
  default     = { recommend = 0, events = 0, health = 0, "admin-items" = 0 }
}

variable "max_instances" {
  type        = map(number)
  description = "Instance ceiling per function (recommend, events, health, admin-items; a missing one: 5)."
  default     = { recommend = 10, events = 5, health = 2, "admin-items" = 1 }
}

variable "extra_environment" {
  type        = map(string)
  description = "Further plain (non-secret) environment variables for every function (docs/SERVING.md lists them)."
  default     = {}
}
