variable "project_id" {
  type        = string
  description = "Project that owns the network, the connector and the Redis instance."
}

variable "region" {
  type        = string
  description = "Region of the Redis instance, the subnetwork and the Serverless VPC Access connector (the functions' region)."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names, e.g. recsys-dev. The connector is named <prefix>-connector and must fit in 25 characters."

  validation {
    condition     = length(var.name_prefix) <= 15
    error_message = "name_prefix must be at most 15 characters so that <prefix>-connector fits the connector's 25-character limit."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on the Redis instance."
  default     = {}
}

variable "subnet_cidr" {
  type        = string
  description = "Range of the private subnetwork used by the nightly job's Dataflow workers."
  default     = "10.10.0.0/24"
}

variable "connector_cidr" {
  type        = string
  description = "Unused /28 range for the Serverless VPC Access connector's instances."
  default     = "10.8.0.0/28"
}

variable "connector_machine_type" {
  type        = string
  description = "Machine type of the connector's instances (e2-micro, f1-micro or e2-standard-4)."
  default     = "e2-micro"
}

variable "connector_min_instances" {
  type        = number
  description = "Minimum number of connector instances (2 to 9)."
  default     = 2
}

variable "connector_max_instances" {
  type        = number
  description = "Maximum number of connector instances (3 to 10, above the minimum)."
  default     = 3
}

variable "redis_tier" {
  type        = string
  description = "BASIC (one node, no failover) or STANDARD_HA (replica in another zone, automatic failover)."
  default     = "BASIC"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_size_gb" {
  type        = number
  description = "Redis memory in GiB: room for two published versions of every user's top-K list plus recent-history lists."
  default     = 1
}

variable "redis_version" {
  type        = string
  description = "Memorystore Redis version."
  default     = "REDIS_7_2"
}

variable "redis_reserved_ip_range" {
  type        = string
  description = "Optional /29 range for the Redis instance inside the network; null lets the service pick an unused one."
  default     = null
}
