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

variable "redis_rdb_snapshot_period" {
  type        = string
  description = "How often the instance (cache_type instance) writes an RDB snapshot: ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS. A restart or failure loses what came after the last one."
  default     = "ONE_HOUR"

  validation {
    condition     = contains(["ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"], var.redis_rdb_snapshot_period)
    error_message = "redis_rdb_snapshot_period must be ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  }
}

variable "cache_type" {
  type        = string
  description = "instance: Memorystore for Redis (redis_tier, RDB snapshots). cluster: Memorystore for Redis Cluster (shards with replicas, AOF persistence), the production cache once the users' lists outgrow one node."
  default     = "instance"

  validation {
    condition     = contains(["instance", "cluster"], var.cache_type)
    error_message = "cache_type must be instance or cluster."
  }
}

variable "redis_cluster_shard_count" {
  type        = number
  description = "Shards of the cluster (cache_type cluster): bytes per user x users / usable memory of one node, rounded up (docs/SCALING.md)."
  default     = 3
}

variable "redis_cluster_replica_count" {
  type        = number
  description = "Replicas per shard (cache_type cluster), 0 to 2; at least 1 for failover."
  default     = 1

  validation {
    condition     = var.redis_cluster_replica_count >= 0 && var.redis_cluster_replica_count <= 2
    error_message = "redis_cluster_replica_count must be 0, 1 or 2."
  }
}

variable "redis_cluster_node_type" {
  type        = string
  description = "Node type of the cluster (cache_type cluster): REDIS_SHARED_CORE_NANO, REDIS_STANDARD_SMALL, REDIS_HIGHMEM_MEDIUM or REDIS_HIGHMEM_XLARGE."
  default     = "REDIS_HIGHMEM_MEDIUM"

  validation {
    condition     = contains(["REDIS_SHARED_CORE_NANO", "REDIS_STANDARD_SMALL", "REDIS_HIGHMEM_MEDIUM", "REDIS_HIGHMEM_XLARGE"], var.redis_cluster_node_type)
    error_message = "redis_cluster_node_type must be REDIS_SHARED_CORE_NANO, REDIS_STANDARD_SMALL, REDIS_HIGHMEM_MEDIUM or REDIS_HIGHMEM_XLARGE."
  }
}

variable "redis_aof_append_fsync" {
  type        = string
  description = "When the cluster's AOF is fsynced: ALWAYS (before each reply: a machine crash loses no acknowledged write) or EVERYSEC (up to a second of them on a machine crash; faster writes). docs/DEPLOY.md."
  default     = "ALWAYS"

  validation {
    condition     = contains(["ALWAYS", "EVERYSEC"], var.redis_aof_append_fsync)
    error_message = "redis_aof_append_fsync must be ALWAYS or EVERYSEC (NO leaves it to the kernel: up to ~30 s lost)."
  }
}

variable "redis_cluster_authorization_mode" {
  type        = string
  description = "AUTH_MODE_DISABLED (only clients inside the network reach the cluster, over TLS) or AUTH_MODE_IAM_AUTH (an IAM access token as the password, which the clients do not fetch yet)."
  default     = "AUTH_MODE_DISABLED"

  validation {
    condition     = contains(["AUTH_MODE_DISABLED", "AUTH_MODE_IAM_AUTH"], var.redis_cluster_authorization_mode)
    error_message = "redis_cluster_authorization_mode must be AUTH_MODE_DISABLED or AUTH_MODE_IAM_AUTH."
  }
}

variable "redis_psc_cidr" {
  type        = string
  description = "Range of the subnetwork holding the cluster's Private Service Connect endpoints (cache_type cluster)."
  default     = "10.10.1.0/28"
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the cluster (cache_type cluster) until this is turned off."
  default     = true
}
