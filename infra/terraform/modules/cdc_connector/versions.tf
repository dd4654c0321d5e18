terraform {
  # No provider: the connector is written through a labelled terraform_data step (see main.tf). OpenTofu >= 1.8
  # for terraform_data's destroy-time provisioners reading self.input.
  required_version = ">= 1.8"
}
