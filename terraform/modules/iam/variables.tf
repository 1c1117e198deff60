variable "project_id" {
  type        = string
  description = "Project that owns the service accounts and receives the project-level role grants."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every account id, e.g. recsys-dev (account ids end up as <prefix>-functions, <prefix>-batch, ...; at most 30 characters)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter, so that <prefix>-scheduler fits the 30-character account id limit."
  }
}
