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
  description = "Private IP address of the Redis instance."
  value       = google_redis_instance.main.host
}

output "redis_port" {
  description = "TLS port of the Redis instance (6378 with in-transit encryption)."
  value       = google_redis_instance.main.port
}

output "redis_instance" {
  description = "Name of the Memorystore instance."
  value       = google_redis_instance.main.name
}

output "redis_url" {
  description = "REDIS_URL for redis-py: rediss://:AUTH@HOST:PORT/0 with the instance CA inlined. Goes to Secret Manager, never to plain env."
  value       = local.redis_url
  sensitive   = true
}
