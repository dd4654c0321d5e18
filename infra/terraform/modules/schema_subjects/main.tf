# Registry subjects with their compatibility mode, on a registry's Confluent-compatible API.
#
# LABELLED STAND-IN FOR A PROVIDER: no schema-registry provider is served by the module proxy here (see
# docs/iac.md). Two terraform_data resources per subject call the project's CLI:
# - `subject`: created once (sets the compatibility mode); at destroy, deletes the subject and its versions;
# - `version`: re-created whenever the schema or the mode changes; its create step sets the mode and registers
#   the schema, which the registry refuses if it breaks the mode (the apply fails with the registry's reason).
#   Replacing it never deletes anything: old versions stay in the registry, as they must for old data.
# A real provider would read the subject back on every plan (drift) and show the new version as an update.

resource "terraform_data" "subject" {
  for_each = var.subjects

  triggers_replace = { registry_url = var.registry_url, subject = each.key }

  input = {
    kind          = "subject"
    registry_url  = var.registry_url
    subject       = each.key
    compatibility = each.value.compatibility
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

resource "terraform_data" "version" {
  for_each = var.subjects

  triggers_replace = {
    subject       = terraform_data.subject[each.key].id
    schema        = each.value.schema
    schema_type   = each.value.schema_type
    compatibility = each.value.compatibility
  }

  input = {
    kind          = "subject_version"
    registry_url  = var.registry_url
    subject       = each.key
    schema        = each.value.schema
    schema_type   = each.value.schema_type
    compatibility = each.value.compatibility
  }

  provisioner "local-exec" {
    command     = "delab platform create"
    environment = { DELAB_PLATFORM_SPEC = jsonencode(self.input) }
  }
}
