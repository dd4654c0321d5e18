output "bucket" {
  description = "The bucket."
  value       = terraform_data.bucket.output.bucket
}

output "namespace" {
  description = "The Iceberg namespace."
  value       = terraform_data.namespace.output.namespace
}

output "location" {
  description = "The namespace's location: its tables are created under <location>/<table>."
  value       = local.location
}
