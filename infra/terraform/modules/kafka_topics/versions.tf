terraform {
  required_version = ">= 1.8"
  required_providers {
    # configured by the root module (bootstrap servers, TLS/SASL): a module never configures its providers
    kafka = {
      source  = "mongey/kafka"
      version = "~> 0.13"
    }
  }
}
