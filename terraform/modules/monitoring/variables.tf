variable "project_id" {
  type        = string
  description = "Project whose Cloud Monitoring (and Managed Prometheus data) holds the dashboard and the alert policies."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the dashboard's and the policies' display names, e.g. recsys-dev."
}

variable "labels" {
  type        = map(string)
  description = "User labels of the alert policies."
  default     = {}
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channels every alert policy notifies, as ids projects/PROJECT/notificationChannels/ID (email, PagerDuty, Slack, ... created in the console or with gcloud); [] leaves the policies without notifications (incidents still open in the console)."
  default     = []

  validation {
    condition     = alltrue([for id in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", id))])
    error_message = "notification_channels must be ids like projects/my-project/notificationChannels/1234567890."
  }
}

variable "alerts_enabled" {
  type        = bool
  description = "Whether the alert policies evaluate (false keeps them, silenced, e.g. during a migration)."
  default     = true
}
