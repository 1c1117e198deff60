output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard (projects/NUMBER/dashboards/ID)."
  value       = google_monitoring_dashboard.main.id
}

output "alert_policies" {
  description = "Alert policy names (projects/P/alertPolicies/ID) keyed by alert, as in infra/monitoring/recsys.rules.yml."
  value       = { for alert, policy in google_monitoring_alert_policy.main : alert => policy.name }
}
