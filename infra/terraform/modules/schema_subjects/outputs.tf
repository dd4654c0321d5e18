output "subjects" {
  description = "Each subject's compatibility mode, by subject name."
  value       = { for name, s in var.subjects : name => s.compatibility }
}

output "schema_urls" {
  description = "Where each subject's latest schema is read (GET)."
  value       = { for name, _ in var.subjects : name => "${var.registry_url}/subjects/${name}/versions/latest" }
}
