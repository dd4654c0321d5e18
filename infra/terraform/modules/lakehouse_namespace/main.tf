# A lakehouse namespace: a bucket on the object store and an Iceberg namespace whose location is in that bucket
# (tables created in it without a location land under s3://<bucket>/<namespace>/<table>).
#
# LABELLED STAND-IN FOR A PROVIDER: the AWS provider (aws_s3_bucket with custom endpoints) is too large a build
# for setup here and no Iceberg catalog provider is served (see docs/iac.md), so both are terraform_data
# resources whose provisioners call the project's CLI (`delab platform create` / `delab platform delete`).
# Like aws_s3_bucket, destroy refuses to delete data unless force_destroy is true.

locals {
  location = "s3://${var.bucket}/${var.namespace}"
}

resource "terraform_data" "bucket" {
  triggers_replace = var.bucket

  input = {
    kind          = "bucket"
    bucket        = var.bucket
    force_destroy = var.force_destroy
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

resource "terraform_data" "namespace" {
  triggers_replace = { bucket = terraform_data.bucket.id, catalog = var.catalog, namespace = var.namespace }

  input = {
    kind          = "namespace"
    catalog       = var.catalog
    namespace     = var.namespace
    location      = local.location
    force_destroy = var.force_destroy
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
