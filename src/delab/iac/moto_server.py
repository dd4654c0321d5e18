"""moto's AWS emulator in server mode, warmed before it listens (run by ``delab.iac.cloudformation.emulator``).

    python -m delab.iac.moto_server --port 15050

moto's server imports a service's backend on that service's first request, and CloudFormation's backend imports
the models of every service it can create (EC2, API Gateway, RDS, ...): the first ``CreateStack`` took 90 s on a
loaded machine. Here that import happens *before* the port opens, so "the port answers" means "warm". Two things
make it shorter: jsonschema's optional IRI format checker (``rfc3987_syntax``, which compiles a grammar at import,
about a third of the time) is skipped — the templates here never use that format — and the lab starts this
process first and lints templates offline while it warms.
"""

from __future__ import annotations

import argparse
import sys
import time


def warm() -> float:
    """Import CloudFormation's backend (and with it every resource model); the seconds it took."""
    started = time.monotonic()
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # an ImportError to jsonschema
    import moto.cloudformation.parsing  # noqa: F401

    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    print(f"delab: CloudFormation backend imported in {warm():.1f} s", flush=True)
    from moto.server import main as moto_main

    moto_main(["-H", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    main()
