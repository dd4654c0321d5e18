# A Debezium PostgreSQL connector on Kafka Connect, with its own replication slot and its own filtered
# publication (never the stack's FOR ALL TABLES dbz_publication).
#
# LABELLED STAND-IN FOR A PROVIDER: no Kafka Connect provider is served by the module proxy here (see
# docs/iac.md), so the connector is a terraform_data resource whose provisioners call the project's CLI:
# `delab platform create` PUTs the config and waits until the task runs; `delab platform delete` (at destroy)
# deletes the connector, drops its slot (else it holds WAL forever) and the publication if Debezium made it.
# What a real provider (e.g. Mongey/kafka-connect) does differently: it reads the connector back on every plan
# (drift shows), and updates a changed config in place (PUT /config). Here a config change REPLACES the
# connector: its slot is dropped and a new one snapshots the tables again.

locals {
  slot        = coalesce(var.slot_name, var.name)
  publication = coalesce(var.publication_name, "${var.name}_pub")

  config = merge(var.extra_config, {
    "connector.class"             = "io.debezium.connector.postgresql.PostgresConnector"
    "plugin.name"                 = "pgoutput"
    "database.hostname"           = var.database.host
    "database.port"               = tostring(var.database.port)
    "database.dbname"             = var.database.dbname
    "database.user"               = var.database.user
    "topic.prefix"                = var.topic_prefix
    "table.include.list"          = join(",", var.tables)
    "slot.name"                   = local.slot
    "publication.name"            = local.publication
    "publication.autocreate.mode" = var.publication_autocreate
    "snapshot.mode"               = var.snapshot_mode
  })
}

resource "terraform_data" "connector" {
  # any change of these re-creates the connector (see above)
  triggers_replace = {
    name        = var.name
    connect_url = var.connect_url
    config      = local.config
  }

  input = {
    kind             = "connector"
    name             = var.name
    connect_url      = var.connect_url
    config           = local.config
    slot             = local.slot
    publication      = local.publication
    owns_publication = var.publication_autocreate == "filtered"
  }

  provisioner "local-exec" {
    command     = "delab platform create"
    environment = { DELAB_PLATFORM_SPEC = jsonencode(self.input) }
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "delab platform delete"
    environment = { DELAB_PLATFORM_SPEC = jsonencode(self.input) }
  }
}
