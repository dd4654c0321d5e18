terraform {
  # No provider: subjects are written through labelled terraform_data steps (see main.tf).
  required_version = ">= 1.8"
}
