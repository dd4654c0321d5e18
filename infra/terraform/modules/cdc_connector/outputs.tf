output "connector_name" {
  description = "The connector's name on Kafka Connect."
  value       = terraform_data.connector.output.name
}

output "topics" {
  description = "The change topic of each captured table, by <schema>.<table>."
  value       = { for t in var.tables : t => "${var.topic_prefix}.${t}" }
}

output "slot_name" {
  description = "The connector's replication slot."
  value       = local.slot
}

output "publication_name" {
  description = "The publication the slot reads."
  value       = local.publication
}

output "config" {
  description = "The connector's configuration as sent to Connect (without the password, which the delab step adds)."
  value       = local.config
}
