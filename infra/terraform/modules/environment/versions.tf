terraform {
  required_version = ">= 1.8"
  required_providers {
    # configured by the root module of each environment: a module never configures its providers
    kafka = {
      source  = "mongey/kafka"
      version = "~> 0.13"
    }
    postgresql = {
      source  = "delab.local/terraform-providers/postgresql"
      version = "1.7.1"
    }
  }
}
