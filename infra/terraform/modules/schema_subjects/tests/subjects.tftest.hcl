# Unit tests of the module: plans only (no registry needed; provisioners never run in a plan).
variables {
  registry_url = "http://127.0.0.1:8081/apis/ccompat/v7"
  subjects = {
    "shop.orders-value" = {
      schema = "{\"type\": \"record\", \"name\": \"Order\", \"fields\": [{\"name\": \"id\", \"type\": \"int\"}]}"
    }
    "shop.customers-value" = {
      schema        = "{\"type\": \"record\", \"name\": \"Customer\", \"fields\": [{\"name\": \"id\", \"type\": \"int\"}]}"
      compatibility = "FULL"
    }
  }
}

run "modes_default_to_backward" {
  command = plan

  assert {
    condition     = output.subjects == { "shop.orders-value" = "BACKWARD", "shop.customers-value" = "FULL" }
    error_message = "a subject's mode defaults to BACKWARD and can be set per subject"
  }
  assert {
    condition     = terraform_data.version["shop.orders-value"].input.schema_type == "AVRO"
    error_message = "schemas are Avro unless told otherwise"
  }
}

run "latest_schema_urls" {
  command = plan

  assert {
    condition     = output.schema_urls["shop.orders-value"] == "http://127.0.0.1:8081/apis/ccompat/v7/subjects/shop.orders-value/versions/latest"
    error_message = "the latest version of a subject is read at <registry>/subjects/<subject>/versions/latest"
  }
}

run "rejects_an_unknown_compatibility_mode" {
  command = plan
  variables {
    subjects = { "shop.orders-value" = { schema = "{\"type\": \"string\"}", compatibility = "backwards" } }
  }
  expect_failures = [var.subjects]
}

run "rejects_a_schema_that_is_not_json" {
  command = plan
  variables {
    subjects = { "shop.orders-value" = { schema = "record Order { int id; }" } }
  }
  expect_failures = [var.subjects]
}

run "rejects_a_subject_named_after_the_table" {
  command = plan
  variables {
    subjects = { "orders" = { schema = "{\"type\": \"string\"}" } }
  }
  expect_failures = [var.subjects]
}
