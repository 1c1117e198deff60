# Memorystore for Redis on a private network only: AUTH on, TLS with a per-instance CA, no
# public address. The functions reach it through a Serverless VPC Access connector; the nightly
# Dataflow workers run in the subnetwork below (private IPs only, Google APIs through Private
# Google Access).

resource "google_compute_network" "main" {
  project                 = var.project_id
  name                    = "${var.name_prefix}-network"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "main" {
  project                  = var.project_id
  name                     = "${var.name_prefix}-workers"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Dataflow workers talk to each other on 12345-12346 (shuffle, data plane). Dataflow tags its
# worker VMs "dataflow"; nothing else is let in.
resource "google_compute_firewall" "main" {
  project     = var.project_id
  name        = "${var.name_prefix}-dataflow-internal"
  network     = google_compute_network.main.id
  direction   = "INGRESS"
  source_tags = ["dataflow"]
  target_tags = ["dataflow"]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_vpc_access_connector" "main" {
  project       = var.project_id
  name          = "${var.name_prefix}-connector"
  region        = var.region
  network       = google_compute_network.main.name
  ip_cidr_range = var.connector_cidr
  machine_type  = var.connector_machine_type
  min_instances = var.connector_min_instances
  max_instances = var.connector_max_instances
}

# The serving cache is one of two kinds (var.cache_type):
# - "instance": Memorystore for Redis, one primary (BASIC) or a primary and a replica in another
#   zone (STANDARD_HA), with RDB snapshots (the only persistence the instance offers);
# - "cluster": Memorystore for Redis Cluster, shards each with replicas in other zones and AOF
#   persistence. Clients use rediss+cluster:// (infra/redis/client.py).
# docs/DEPLOY.md says, per kind, which acknowledged events a crash, restart or failover loses.

resource "google_redis_instance" "main" {
  count = var.cache_type == "instance" ? 1 : 0

  project                 = var.project_id
  name                    = "${var.name_prefix}-cache"
  display_name            = "${var.name_prefix} serving cache"
  region                  = var.region
  tier                    = var.redis_tier
  memory_size_gb          = var.redis_memory_size_gb
  redis_version           = var.redis_version
  authorized_network      = google_compute_network.main.id
  connect_mode            = "DIRECT_PEERING"
  reserved_ip_range       = var.redis_reserved_ip_range
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  labels                  = var.labels

  # Published lists are rebuilt every night; under memory pressure, expire what has a TTL
  # (old versions kept for rollback) before anything else.
  redis_configs = {
    maxmemory-policy = "volatile-lru"
  }

  # Without it a restart or a BASIC instance's failure comes back empty: every event not yet
  # drained is lost. With it, what came after the last snapshot (up to one period) is.
  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = var.redis_rdb_snapshot_period
  }
}

# Before this module offered a cluster, the instance had no count.
moved {
  from = google_redis_instance.main
  to   = google_redis_instance.main[0]
}

# Redis Cluster is reached through Private Service Connect: a subnetwork for its endpoints and
# the policy that lets Memorystore create them there.
resource "google_compute_subnetwork" "redis_psc" {
  count = var.cache_type == "cluster" ? 1 : 0

  project                  = var.project_id
  name                     = "${var.name_prefix}-redis-psc"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.redis_psc_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_network_connectivity_service_connection_policy" "redis" {
  count = var.cache_type == "cluster" ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-redis-psc"
  location      = var.region
  service_class = "gcp-memorystore-redis"
  network       = google_compute_network.main.id

  psc_config {
    subnetworks = [google_compute_subnetwork.redis_psc[0].id]
  }
}

resource "google_redis_cluster" "main" {
  count = var.cache_type == "cluster" ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-cache"
  region        = var.region
  shard_count   = var.redis_cluster_shard_count
  replica_count = var.redis_cluster_replica_count
  node_type     = var.redis_cluster_node_type

  transit_encryption_mode = "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
  # AUTH_MODE_IAM_AUTH takes a short-lived IAM access token as the password, which the clients
  # (infra/redis/client.py) cannot fetch yet; until they can, only clients inside the network
  # (PSC endpoints in redis_psc) reach the cluster, over TLS.
  authorization_mode          = var.redis_cluster_authorization_mode
  deletion_protection_enabled = var.deletion_protection

  psc_configs {
    network = google_compute_network.main.id
  }

  # Replicas in other zones than their primaries: a zone outage fails over.
  zone_distribution_config {
    mode = "MULTI_ZONE"
  }

  redis_configs = {
    maxmemory-policy = "volatile-lru"
  }

  # AOF: every write is appended before it is acknowledged. ALWAYS fsyncs before the reply, so
  # even a machine crash loses nothing acknowledged; EVERYSEC loses up to a second of them on
  # a machine crash (not on a process crash: `python -m benchmarks.events --redis-kill`).
  persistence_config {
    mode = "AOF"
    aof_config {
      append_fsync = var.redis_aof_append_fsync
    }
  }

  depends_on = [google_network_connectivity_service_connection_policy.redis]
}

locals {
  instance = one(google_redis_instance.main)
  cluster  = one(google_redis_cluster.main)

  # Every CA the cache currently trusts (more than one while Google rotates them).
  redis_ca_pem = local.instance != null ? join("", local.instance.server_ca_certs[*].cert) : join("", flatten([
    for ca in local.cluster.managed_server_ca : [for certs in ca.ca_certs : certs.certificates]
  ]))
  redis_host = local.instance != null ? local.instance.host : local.cluster.discovery_endpoints[0].address
  redis_port = local.instance != null ? local.instance.port : local.cluster.discovery_endpoints[0].port

  # One URL carries everything a redis-py client needs: TLS (rediss), the AUTH string and the
  # instance's CA, so the same secret works in the functions, on Dataflow workers and in the
  # admin job without a certificate file. The chain is verified against the per-instance CA,
  # which signs this instance's certificate only; the hostname check is off because clients
  # connect by IP address. A cluster's URL names its discovery endpoint (rediss+cluster://, no
  # AUTH string: see authorization_mode); the client finds the shards from there.
  redis_url = local.instance != null ? format(
    "rediss://:%s@%s:%d/0?ssl_check_hostname=false&ssl_ca_data=%s",
    urlencode(local.instance.auth_string), local.redis_host, local.redis_port,
    urlencode(local.redis_ca_pem),
    ) : format(
    "rediss+cluster://%s:%d/0?ssl_check_hostname=false&ssl_ca_data=%s",
    local.redis_host, local.redis_port, urlencode(local.redis_ca_pem),
  )
}
