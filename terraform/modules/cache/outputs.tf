output "network_id" {
  description = "Id of the private VPC network (projects/P/global/networks/N)."
  value       = google_compute_network.main.id
}

output "subnetwork_self_link" {
  description = "Self link of the workers' subnetwork, passed to Dataflow as `subnetwork`."
  value       = google_compute_subnetwork.main.self_link
}

output "vpc_connector_id" {
  description = "Id of the Serverless VPC Access connector (projects/P/locations/R/connectors/C)."
  value       = google_vpc_access_connector.main.id
}

output "redis_host" {
  description = "Private IP address of the Redis instance, or of the cluster's discovery endpoint."
  value       = local.redis_host
}

output "redis_port" {
  description = "TLS port of the Redis instance (6378 with in-transit encryption) or of the cluster's discovery endpoint."
  value       = local.redis_port
}

output "redis_instance" {
  description = "Name of the Memorystore instance or cluster."
  value       = local.instance != null ? local.instance.name : local.cluster.name
}

output "cache_type" {
  description = "instance (Memorystore for Redis, RDB snapshots) or cluster (Memorystore for Redis Cluster, AOF, replicas)."
  value       = var.cache_type
}

output "redis_url" {
  description = "REDIS_URL for redis-py: rediss://:AUTH@HOST:PORT/0 (instance) or rediss+cluster://HOST:PORT/0 (cluster) with the CA inlined. Goes to Secret Manager, never to plain env."
  value       = local.redis_url
  sensitive   = true
}
