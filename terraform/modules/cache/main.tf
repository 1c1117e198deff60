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

resource "google_redis_instance" "main" {
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
}

locals {
  # Every CA the instance currently trusts (more than one while Google rotates them).
  redis_ca_pem = join("", google_redis_instance.main.server_ca_certs[*].cert)

  # One URL carries everything a redis-py client needs: TLS (rediss), the AUTH string and the
  # instance's CA, so the same secret works in the functions, on Dataflow workers and in the
  # admin job without a certificate file. The chain is verified against the per-instance CA,
  # which signs this instance's certificate only; the hostname check is off because clients
  # connect by IP address.
  redis_url = format(
    "rediss://:%s@%s:%d/0?ssl_check_hostname=false&ssl_ca_data=%s",
    urlencode(google_redis_instance.main.auth_string),
    google_redis_instance.main.host,
    google_redis_instance.main.port,
    urlencode(local.redis_ca_pem),
  )
}
