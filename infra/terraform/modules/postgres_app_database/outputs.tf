output "database" {
  description = "The database name."
  value       = postgresql_database.this.name
}

output "owner" {
  description = "The owner role."
  value       = postgresql_role.owner.name
}

output "groups" {
  description = "Group roles by kind (read, write)."
  value       = { for kind, role in postgresql_role.group : kind => role.name }
}

output "logins" {
  description = "Login roles and the group each belongs to."
  value       = { for user, role in postgresql_role.login : user => var.logins[user] }
}

output "connection_limit" {
  description = "Connections the database accepts."
  value       = postgresql_database.this.connection_limit
}
