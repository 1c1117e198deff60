output "urls" {
  description = "HTTPS URLs of the functions keyed by name (recommend, similar, trending, events, health, admin-items)."
  value       = { for name, function in google_cloudfunctions2_function.main : name => function.service_config[0].uri }
}

output "recommend_url" {
  description = "HTTPS URL of recommend."
  value       = google_cloudfunctions2_function.main["recommend"].service_config[0].uri
}

output "similar_url" {
  description = "HTTPS URL of similar (an item's neighbours)."
  value       = google_cloudfunctions2_function.main["similar"].service_config[0].uri
}

output "trending_url" {
  description = "HTTPS URL of trending (the most engaged items of a recent window)."
  value       = google_cloudfunctions2_function.main["trending"].service_config[0].uri
}

output "events_url" {
  description = "HTTPS URL of events."
  value       = google_cloudfunctions2_function.main["events"].service_config[0].uri
}

output "health_url" {
  description = "HTTPS URL of health."
  value       = google_cloudfunctions2_function.main["health"].service_config[0].uri
}

output "admin_items_url" {
  description = "HTTPS URL of admin-items (GET the item filters, POST changes; docs/SERVING.md)."
  value       = google_cloudfunctions2_function.main["admin-items"].service_config[0].uri
}

output "function_names" {
  description = "Deployed function names keyed by role (recommend, similar, trending, events, health, admin-items)."
  value       = { for name, function in google_cloudfunctions2_function.main : name => function.name }
}

output "source_bucket" {
  description = "Bucket holding the uploaded source archives."
  value       = google_storage_bucket.main.name
}

output "source_object" {
  description = "Object name of the archive the functions were built from."
  value       = google_storage_bucket_object.main.name
}
