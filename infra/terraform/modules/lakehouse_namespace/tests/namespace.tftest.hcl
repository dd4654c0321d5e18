# Unit tests of the module: plans only (no object store or catalog needed; provisioners never run in a plan).
variables {
  bucket    = "shop-lake"
  namespace = "shop_cdc"
}

run "the_namespace_lives_in_its_bucket" {
  command = plan

  assert {
    condition     = output.location == "s3://shop-lake/shop_cdc"
    error_message = "the namespace's location is s3://<bucket>/<namespace>"
  }
  assert {
    condition     = terraform_data.namespace.input.catalog == "lake"
    error_message = "the project's catalog is called lake"
  }
}

run "destroy_keeps_data_unless_told" {
  command = plan

  assert {
    condition     = !terraform_data.bucket.input.force_destroy && !terraform_data.namespace.input.force_destroy
    error_message = "force_destroy defaults to false: destroy refuses to drop tables or objects"
  }
}

run "rejects_an_underscore_in_the_bucket" {
  command = plan
  variables {
    bucket = "shop_lake"
  }
  expect_failures = [var.bucket]
}

run "rejects_a_dash_in_the_namespace" {
  command = plan
  variables {
    namespace = "shop-cdc"
  }
  expect_failures = [var.namespace]
}
