# A set of topics sharing a prefix, and the ACLs that let named principals read or write them.
# ACLs take effect only on a cluster with an authorizer (the stack's secured listener, a managed cluster).

locals {
  topic_names = { for name, _ in var.topics : name => "${var.prefix}.${name}" }

  # one ACL per (principal, operation, resource): a map keyed by a readable id, so adding a principal never
  # re-creates the ACLs of the others
  acl_list = concat(
    [for p in var.readers : { principal = p, operation = "Read", type = "Topic", name = "${var.prefix}." }],
    [for p in var.readers : { principal = p, operation = "Describe", type = "Topic", name = "${var.prefix}." }],
    [for p in var.readers : { principal = p, operation = "Read", type = "Group", name = "${var.prefix}." }],
    [for p in var.writers : { principal = p, operation = "Write", type = "Topic", name = "${var.prefix}." }],
    [for p in var.writers : { principal = p, operation = "Describe", type = "Topic", name = "${var.prefix}." }],
  )
  # distinct: a principal that both reads and writes needs Describe once
  acls = { for acl in distinct(local.acl_list) : "${acl.principal}/${acl.type}/${acl.operation}" => acl }
}

resource "kafka_topic" "this" {
  for_each = var.topics

  name               = local.topic_names[each.key]
  partitions         = each.value.partitions
  replication_factor = each.value.replication_factor
  config = {
    "retention.ms"   = tostring(each.value.retention_ms)
    "cleanup.policy" = each.value.cleanup_policy
  }
}

resource "kafka_acl" "this" {
  for_each = local.acls

  acl_principal                = each.value.principal
  acl_host                     = "*"
  acl_operation                = each.value.operation
  acl_permission_type          = "Allow"
  resource_name                = each.value.name
  resource_type                = each.value.type
  resource_pattern_type_filter = "Prefixed"
}
