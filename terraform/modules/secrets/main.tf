# Secret Manager holds every credential the running system needs; Terraform only wires names.
# - api_key (events), admin_key (admin-items), recommend_key (recommend, when it requires a key)
#   and cursor_secret (signs page cursors): created empty. Their versions are added by an
#   operator (docs/DEPLOY.md), so the keys never pass through Terraform or its state.
# - redis_url: written from the cache module (AUTH string + CA; both are in the state anyway).
# - <role>_s3_access_key_id / <role>_s3_secret_access_key: the storage module's HMAC keys.

resource "google_secret_manager_secret" "api_key" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-api-key"
  labels    = var.labels

  replication {
    auto {}
  }
}

# The other operator-written secrets; api_key keeps its own resource (and state address).
resource "google_secret_manager_secret" "keys" {
  for_each = toset(["admin_key", "recommend_key", "cursor_secret"])

  project   = var.project_id
  secret_id = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret" "redis_url" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-redis-url"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "redis_url" {
  secret      = google_secret_manager_secret.redis_url.id
  secret_data = var.redis_url
}

resource "google_secret_manager_secret" "s3_access_key_id" {
  for_each = var.hmac_access_ids

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}-s3-access-key-id"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "s3_access_key_id" {
  for_each = var.hmac_access_ids

  secret      = google_secret_manager_secret.s3_access_key_id[each.key].id
  secret_data = each.value
}

resource "google_secret_manager_secret" "s3_secret_access_key" {
  for_each = var.hmac_access_ids

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}-s3-secret-access-key"
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "s3_secret_access_key" {
  for_each = var.hmac_access_ids

  secret      = google_secret_manager_secret.s3_secret_access_key[each.key].id
  secret_data = var.hmac_secrets[each.key]
}

locals {
  secrets = merge(
    {
      api_key   = google_secret_manager_secret.api_key
      redis_url = google_secret_manager_secret.redis_url
    },
    google_secret_manager_secret.keys,
    { for role, secret in google_secret_manager_secret.s3_access_key_id : "${role}_s3_access_key_id" => secret },
    { for role, secret in google_secret_manager_secret.s3_secret_access_key : "${role}_s3_secret_access_key" => secret },
  )

  # One binding per (accessor, secret); keys are built from static names only.
  accessor_bindings = merge([
    for name, accessor in var.accessors : {
      for secret in accessor.secrets : "${name}/${secret}" => {
        member = accessor.member
        secret = secret
      }
    }
  ]...)
}

resource "google_secret_manager_secret_iam_member" "main" {
  for_each = local.accessor_bindings

  project   = var.project_id
  secret_id = local.secrets[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
