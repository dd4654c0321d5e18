"""The three kernel environments: locked exactly, registered as kernels, each able to import its stack and delab;
environment.yml mirrors the main lock."""

from __future__ import annotations

import re

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from delab import config, envfiles

ROOT = config.project_root()
LOCKS = {"delab": "main", "delab-flink": "flink", "delab-airflow": "airflow", "delab-mlops": "mlops"}
TOOL_LOCKS = {"checkov": "checkov"}  # command-line tools in their own environment, no kernel
# what each kernel exists for: the import that must work there, and the version the lock pins
PROBES = {
    "delab": ("import duckdb, pyiceberg, kafka, bentoml, python_terraform, jupyterlab", "duckdb", "duckdb.__version__"),
    "delab-flink": ("import pyflink.version", "apache-flink", "pyflink.version.__version__"),
    "delab-airflow": ("import airflow", "apache-airflow", "airflow.__version__"),
    "delab-mlops": ("import mlflow, kserve, bentoml, sklearn", "mlflow", "mlflow.__version__"),
}


@pytest.mark.parametrize("env", [*LOCKS.values(), *TOOL_LOCKS.values()])
def test_every_requirement_is_pinned_with_hashes(env):
    lock = (ROOT / "requirements" / f"{env}.lock").read_text()
    pins = envfiles.lock_pins(ROOT / "requirements" / f"{env}.lock")
    wanted = [line.split("#")[0].strip() for line in (ROOT / "requirements" / f"{env}.in").read_text().splitlines()]
    for requirement in filter(None, wanted):
        name = re.split(r"[\[=<>]", requirement)[0].lower().replace("_", "-")
        assert name in pins, f"{requirement} of {env}.in is not in {env}.lock: run `make lock`"
    blocks = [b for b in re.split(r"\n(?=\S)", lock) if "==" in b]
    assert blocks and all("--hash=sha256:" in b for b in blocks)


def test_duckdb_matches_its_extension_wheels():
    pins = envfiles.lock_pins(ROOT / "requirements" / "main.lock")
    extensions = {k: v for k, v in pins.items() if k.startswith("duckdb-extension")}
    assert extensions and set(extensions.values()) == {pins["duckdb"]}


def test_pyspark_matches_its_kafka_connector_jars():
    pins = envfiles.lock_pins(ROOT / "requirements" / "main.lock")
    pom = (ROOT / "infra" / "native" / "pom.xml").read_text()
    connector = re.search(r"<spark.kafka.version>([^<]+)</spark.kafka.version>", pom)
    assert connector and connector.group(1) == pins["pyspark"], "pyspark and spark.kafka.version must move together"


def test_hudi_bundle_matches_the_flink_environments_pyspark():
    """Hudi's Spark writer runs with the Flink environment's pyspark (docs/environments.md): same Spark minor."""
    pins = envfiles.lock_pins(ROOT / "requirements" / "flink.lock")
    pom = (ROOT / "infra" / "native" / "pom.xml").read_text()
    minor = re.search(r"<hudi.spark.minor>([^<]+)</hudi.spark.minor>", pom)
    assert minor and pins["pyspark"].startswith(minor.group(1) + "."), "pyspark and hudi.spark.minor move together"


def test_environment_yml_mirrors_the_main_lock():
    expected = envfiles.render(ROOT / "requirements" / "main.lock")
    assert (ROOT / "environment.yml").read_text() == expected, "run `make lock` (or python -m delab.envfiles)"
    for tool in ("openjdk=17", "maven", "go", "postgresql"):
        assert f"  - {tool}" in expected


def test_flink_and_main_environments_really_differ():
    main, flink = (envfiles.lock_pins(ROOT / "requirements" / f"{e}.lock") for e in ("main", "flink"))
    assert "apache-flink" not in main and "apache-airflow" not in main
    assert int(flink["pyarrow"].split(".")[0]) < 17  # Beam's cap that PyFlink brings along
    assert int(main["pyiceberg"].split(".")[1]) >= 9  # the reason for separate kernels (docs/environments.md)


@pytest.mark.parametrize("kernel", LOCKS)
def test_kernel_is_registered_and_runs_its_stack_with_delab(kernel):
    specs = KernelSpecManager().find_kernel_specs()
    assert kernel in specs, f"kernel {kernel} is not registered: run `make setup`"
    code, package, version_expr = PROBES[kernel]
    outputs: list[dict] = []
    manager, client = start_new_kernel(kernel_name=kernel, startup_timeout=120)
    try:
        reply = client.execute_interactive(
            f"{code}\nimport delab, delab.grading, sys\nprint(sys.prefix, {version_expr})",
            timeout=180,
            output_hook=lambda msg: outputs.append(msg),
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    prefix, version = printed.strip().splitlines()[-1].split()
    pins = envfiles.lock_pins(ROOT / "requirements" / f"{LOCKS[kernel]}.lock")
    assert version == pins[package]
    assert prefix.endswith(".venv" if kernel == "delab" else f".venv-{kernel.removeprefix('delab-')}")


def test_mlops_kernel_keeps_what_the_main_kernel_cannot():
    main, mlops = (envfiles.lock_pins(ROOT / "requirements" / f"{e}.lock") for e in ("main", "mlops"))
    assert "mlflow" not in main and "kserve" not in main
    assert int(main["pandas"].split(".")[0]) >= 3  # MLflow and KServe would pull it back to 2.x
    assert main["duckdb"] == mlops["duckdb"]


@pytest.mark.parametrize("tool", TOOL_LOCKS)
def test_tool_environment_runs_its_command(tool):
    import subprocess

    binary = ROOT / f".venv-{tool}" / "bin" / tool
    assert binary.exists(), f"{binary.relative_to(ROOT)} is missing: run `make setup`"
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert envfiles.lock_pins(ROOT / "requirements" / f"{tool}.lock")[tool] in done.stdout
