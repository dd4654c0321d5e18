"""Where the native stack keeps things, and where it finds its binaries.

Layout under the stack folder, ``$DELAB_STACK_DIR`` or ``<repo>/.delab/stack``::

    build/   jars, plugins and binaries made by infra/native/install.sh (kept by reset)
    data/    each service's data (wiped by reset)
    run/     generated configs, pid files and logs (wiped by reset)

The stack folder deliberately does not follow ``DELAB_STATE_DIR``: ports are machine-wide, so there is one stack
per checkout, shared by the CLI, every kernel and the test session (which points DELAB_STATE_DIR at a temporary
folder for progress files).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from delab import config
from delab.stack.errors import MissingPrerequisite

INSTALL_HINT = "run `make setup` (or infra/native/install.sh)"


def stack_dir() -> Path:
    """The stack's folder: $DELAB_STACK_DIR, else <repo>/.delab/stack."""
    return Path(os.environ.get("DELAB_STACK_DIR") or config.project_root() / ".delab" / "stack")


def build_dir() -> Path:
    """Jars and binaries from infra/native/install.sh: $DELAB_STACK_BUILD_DIR or <stack>/build."""
    return Path(os.environ.get("DELAB_STACK_BUILD_DIR") or stack_dir() / "build")


def data_dir(service: str) -> Path:
    """A service's data folder."""
    return stack_dir() / "data" / service


def run_dir() -> Path:
    """Generated configs, pid files and logs."""
    return stack_dir() / "run"


def conf_dir(service: str) -> Path:
    """A service's generated configuration folder."""
    return run_dir() / "conf" / service


def log_file(process: str) -> Path:
    """The log file of one process of the stack (stdout and stderr)."""
    return run_dir() / "logs" / f"{process}.log"


def pid_file(process: str) -> Path:
    """The pid file of one process the stack started."""
    return run_dir() / "pids" / f"{process}.pid"


def infra_dir() -> Path:
    """The repository's infra/ folder."""
    return config.project_root() / "infra"


def flink_version() -> str:
    """The Flink version the native stack is built for (infra/native/FLINK_VERSION)."""
    return (infra_dir() / "native" / "FLINK_VERSION").read_text().strip()


# --- Java ------------------------------------------------------------------------------------------------------


@cache
def java_home() -> Path | None:
    """$JAVA_HOME, else the JDK/JRE behind `java` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java is None:
        return None
    return Path(os.path.realpath(java)).parent.parent


def java_bin() -> str:
    """The java executable (Java 17+)."""
    home = java_home()
    java = home / "bin" / "java" if home else None
    if java is None or not java.exists():
        raise MissingPrerequisite(
            "Java 17 not found: install it (apt install openjdk-17-jdk-headless, brew install openjdk@17, "
            "or conda install -c conda-forge openjdk=17) or set JAVA_HOME"
        )
    return str(java)


@cache
def java_major(java: str | None = None) -> int:
    """The major version of a java executable (0 when it cannot run)."""
    try:
        out = subprocess.run(
            [java or java_bin(), "-XshowSettings:properties", "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.TimeoutExpired, MissingPrerequisite):
        return 0
    match = re.search(r"java\.specification\.version = (\d+)", out)
    return int(match.group(1)) if match else 0


#: folders where JDKs usually live, one JDK per subfolder (Linux packages, macOS, SDKMAN, Homebrew, conda...)
JVM_FOLDERS = (
    "/usr/lib/jvm",
    "/usr/java",
    "/opt/java",
    "/opt/jdk",
    "/Library/Java/JavaVirtualMachines",
    "~/.sdkman/candidates/java",
    "~/.jdks",
    "/opt/homebrew/opt",
    "/usr/local/opt",
)


def _jdk_homes_under(folder: Path) -> list[Path]:
    homes = []
    for child in sorted(folder.glob("*")) if folder.is_dir() else []:
        for home in (child, child / "Contents" / "Home", child / "libexec" / "openjdk.jdk" / "Contents" / "Home"):
            if (home / "bin" / "java").exists():
                homes.append(home)
                break
    return homes


def java_home_candidates(override_env: str) -> list[Path]:
    """Every JDK a service could run on, in order of preference: ``$<override_env>``, ``$JAVA_HOME``, the `java`
    on PATH, ``$CONDA_PREFIX``, then each JDK found under the usual JVM folders (newest-looking first)."""
    candidates: list[Path] = []
    for variable in (override_env, "JAVA_HOME"):
        if os.environ.get(variable):
            candidates.append(Path(os.environ[variable]).expanduser())
    java = shutil.which("java")
    if java:
        candidates.append(Path(os.path.realpath(java)).parent.parent)
    if os.environ.get("CONDA_PREFIX"):
        candidates.append(Path(os.environ["CONDA_PREFIX"]))
    scanned: list[Path] = []
    for folder in JVM_FOLDERS:
        scanned += _jdk_homes_under(Path(folder).expanduser())
    digits = re.compile(r"(\d+)")
    scanned.sort(key=lambda home: [int(n) for n in digits.findall(str(home))[:1]] or [0], reverse=True)
    seen: set[Path] = set()
    unique = []
    for home in [*candidates, *scanned]:
        key = home.resolve() if home.exists() else home
        if key not in seen:
            seen.add(key)
            unique.append(home)
    return unique


@cache
def find_java_home(minimum: int, override_env: str) -> Path | None:
    """The first JDK of ``java_home_candidates`` whose major version is at least ``minimum`` (None if none)."""
    for home in java_home_candidates(override_env):
        java = home / "bin" / "java"
        if java.exists() and java_major(str(java)) >= minimum:
            return home
    return None


# --- PostgreSQL ------------------------------------------------------------------------------------------------


@cache
def pg_bindir() -> Path:
    """The PostgreSQL server binaries: $DELAB_PG_BINDIR, Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    if os.environ.get("DELAB_PG_BINDIR"):
        return Path(os.environ["DELAB_PG_BINDIR"])
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name or 0))
    if debian:
        return Path(debian[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise MissingPrerequisite(
        "PostgreSQL server binaries (initdb, postgres) not found: apt install postgresql, brew install "
        "postgresql@15, or conda install -c conda-forge 'postgresql>=15'"
    )


# --- jars and Go binaries --------------------------------------------------------------------------------------


def build_path(*parts: str, what: str) -> Path:
    """A path inside the build folder that must exist; a one-line hint when install.sh has not run."""
    path = build_dir().joinpath(*parts)
    if not path.exists():
        raise MissingPrerequisite(f"{what} not built ({path} is missing): {INSTALL_HINT}")
    return path


def versitygw_bin() -> Path:
    """The versitygw binary: $DELAB_VERSITYGW, else the one install.sh built."""
    if os.environ.get("DELAB_VERSITYGW"):
        return Path(os.environ["DELAB_VERSITYGW"])
    return build_path("bin", "versitygw", what="the S3 gateway (versitygw)")


# --- PyFlink ---------------------------------------------------------------------------------------------------


def _has_pyflink(python: Path) -> Path | None:
    venv = python.parent.parent
    homes = glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "pyflink" / "bin" / "flink"))
    return Path(homes[0]).parent.parent if homes else None


@cache
def flink_python() -> Path:
    """The Python of the Flink environment: $DELAB_FLINK_PYTHON, this interpreter if it has PyFlink, or
    <root>/.venv-flink/bin/python."""
    if os.environ.get("DELAB_FLINK_PYTHON"):
        return Path(os.environ["DELAB_FLINK_PYTHON"])
    candidates = [Path(sys.executable), config.project_root() / ".venv-flink" / "bin" / "python"]
    for python in candidates:
        if python.exists() and _has_pyflink(python):
            return python
    raise MissingPrerequisite(
        f"PyFlink (apache-flink=={flink_version()}) not found: run `make setup` (it builds .venv-flink) "
        "or set DELAB_FLINK_PYTHON to a Python that has it"
    )


@cache
def flink_home() -> Path:
    """FLINK_HOME: $DELAB_FLINK_HOME, else site-packages/pyflink of the Flink environment."""
    if os.environ.get("DELAB_FLINK_HOME"):
        return Path(os.environ["DELAB_FLINK_HOME"])
    home = _has_pyflink(flink_python())
    if home is None:  # an interpreter outside a venv layout: ask it
        out = subprocess.run(
            [str(flink_python()), "-c", "import os, pyflink; print(os.path.dirname(pyflink.__file__))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise MissingPrerequisite(f"cannot import pyflink with {flink_python()}: {INSTALL_HINT}")
        home = Path(out.stdout.strip())
    return home


# --- the MLOps environment (MLflow) ----------------------------------------------------------------------------


def _has_mlflow(python: Path) -> bool:
    venv = python.parent.parent
    return bool(glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "mlflow" / "server")))


@cache
def mlops_python() -> Path:
    """The Python of the MLOps environment (it runs the stack's MLflow server): $DELAB_MLOPS_PYTHON, this
    interpreter if it has MLflow, or <root>/.venv-mlops/bin/python."""
    if os.environ.get("DELAB_MLOPS_PYTHON"):
        return Path(os.environ["DELAB_MLOPS_PYTHON"])
    for python in (Path(sys.executable), config.project_root() / ".venv-mlops" / "bin" / "python"):
        if python.exists() and _has_mlflow(python):
            return python
    raise MissingPrerequisite(
        "MLflow not found: run `make setup` (it builds .venv-mlops) or set DELAB_MLOPS_PYTHON to a Python that has it"
    )
