# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/mongey/kafka" {
  version     = "0.13.1"
  constraints = "~> 0.13"
  hashes = [
    "h1:MPyERn6oZ4s8MNODK4VcXLJugkU8EJdypm6TKNBdZB0=",
  ]
}
