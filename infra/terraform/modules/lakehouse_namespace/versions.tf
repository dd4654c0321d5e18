terraform {
  # No provider: the bucket and the namespace are written through labelled terraform_data steps (see main.tf).
  required_version = ">= 1.8"
}
