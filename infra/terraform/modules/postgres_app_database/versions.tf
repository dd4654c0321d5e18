terraform {
  required_version = ">= 1.8"
  required_providers {
    # The PostgreSQL provider v1.7.1 built by setup from its original module path (see docs/iac.md: the newer
    # cyrilgdn/postgresql releases are not served by the module proxy here). Same resource types as today's.
    postgresql = {
      source  = "delab.local/terraform-providers/postgresql"
      version = "1.7.1"
    }
  }
}
