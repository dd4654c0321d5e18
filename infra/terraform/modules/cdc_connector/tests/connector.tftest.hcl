# Unit tests of the module: plans only (no Kafka Connect or Postgres needed; provisioners never run in a plan).
variables {
  name         = "shop_orders"
  connect_url  = "http://127.0.0.1:8083"
  database     = { host = "127.0.0.1", port = 5432, dbname = "shop_app", user = "cdc" }
  tables       = ["public.orders", "public.customers"]
  topic_prefix = "shop.cdc"
}

run "one_slot_and_one_filtered_publication_per_connector" {
  command = plan

  assert {
    condition     = output.slot_name == "shop_orders" && output.publication_name == "shop_orders_pub"
    error_message = "the slot defaults to the connector's name and the publication to <name>_pub"
  }
  assert {
    condition     = output.config["publication.autocreate.mode"] == "filtered" && output.config["plugin.name"] == "pgoutput"
    error_message = "Debezium makes a filtered publication (FOR TABLE ...) with pgoutput"
  }
  assert {
    condition     = output.config["table.include.list"] == "public.orders,public.customers"
    error_message = "every table reaches the include list"
  }
}

run "change_topics_follow_the_prefix" {
  command = plan

  assert {
    condition     = output.topics == { "public.orders" = "shop.cdc.public.orders", "public.customers" = "shop.cdc.public.customers" }
    error_message = "changes of <schema>.<table> go to <topic_prefix>.<schema>.<table>"
  }
}

run "the_password_is_never_in_the_config" {
  command = plan

  assert {
    condition     = !contains(keys(output.config), "database.password")
    error_message = "the password is added by the delab step from the environment, never planned or stored"
  }
}

run "extra_settings_are_kept" {
  command = plan
  variables {
    extra_config = { "decimal.handling.mode" = "string" }
  }
  assert {
    condition     = output.config["decimal.handling.mode"] == "string"
    error_message = "extra_config reaches the connector"
  }
}

run "rejects_the_all_tables_publication" {
  command = plan
  variables {
    publication_name = "dbz_publication"
  }
  expect_failures = [var.publication_name]
}

run "rejects_all_tables_autocreate" {
  command = plan
  variables {
    publication_autocreate = "all_tables"
  }
  expect_failures = [var.publication_autocreate]
}

run "rejects_an_unqualified_table" {
  command = plan
  variables {
    tables = ["orders"]
  }
  expect_failures = [var.tables]
}

run "rejects_a_topic_prefix_ending_with_a_dot" {
  command = plan
  variables {
    topic_prefix = "shop."
  }
  expect_failures = [var.topic_prefix]
}

run "rejects_overriding_the_slot_through_extra_config" {
  command = plan
  variables {
    extra_config = { "slot.name" = "debezium" }
  }
  expect_failures = [var.extra_config]
}
