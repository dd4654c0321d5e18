"""Infrastructure as code against the real stack (module 07).

- ``delab.iac.tofu``: the OpenTofu binary and providers built by setup (a filesystem mirror, a CLI config that
  points at it: ``tofu init`` never reaches a registry), and ``Tofu``, one wrapper over python-terraform that
  fixes its quirks once;
- ``delab.iac.backends``: state in the stack's Postgres (``backend "pg"``) or object store (``backend "s3"``
  with OpenTofu's S3-native lock file);
- ``delab.iac.secure_kafka``: a TLS + SASL/SCRAM + ACL broker with an audit log, a lab starts and stops (lab 07.06);
- ``delab.iac.certificates``: a CA of the lab's own and the certificates it issues (PEM files);
- ``delab.iac.cost``: a plan's monthly cost from a dated price table, measured usage of the stack, a tagging
  policy and a budget gate (lab 07.05);
- ``delab.iac.security``: probes that try an action as a principal (allowed or denied), TLS handshakes, a
  recording proxy, the audit log as rows, raw object bytes, checkov.
"""

from __future__ import annotations

from delab.iac.backends import pg_backend, s3_backend
from delab.iac.roots import module_source, write_root
from delab.iac.tofu import Plan, Tofu, TofuError, cli_config, modules_dir, tofu_bin, tofu_command

__all__ = [
    "Plan",
    "Tofu",
    "TofuError",
    "cli_config",
    "module_source",
    "modules_dir",
    "pg_backend",
    "s3_backend",
    "tofu_bin",
    "tofu_command",
    "write_root",
]
