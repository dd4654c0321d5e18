output "environment" {
  description = "The environment this copy of the platform is."
  value       = var.environment
}

output "topics" {
  description = "Full topic names by short name."
  value       = module.topics.topic_names
}

output "topic_settings" {
  description = "What each topic was given, by short name (partitions, replicas, retention, cleanup policy)."
  value       = module.topics.topic_settings
}

output "connection_limit" {
  description = "Connections the environment's database accepts."
  value       = module.database.connection_limit
}

output "total_partitions" {
  description = "Partitions times replicas across the environment's topics (what a managed Kafka bills by)."
  value       = module.topics.total_partitions
}

output "database" {
  description = "The environment's application database."
  value       = module.database.database
}

output "analyst" {
  description = "The environment's read-only login role."
  value       = keys(module.database.logins)[0]
}
