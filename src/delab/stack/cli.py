"""`delab stack up|down|status|logs|reset` and `delab doctor` (mounted by delab.cli)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from delab import config
from delab.stack import docker, layout, manager
from delab.stack.errors import MissingPrerequisite, StackError

app = typer.Typer(
    help="Start, stop and inspect the data stack (Kafka, Connect+Debezium, Postgres, S3, Flink).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

STATE_STYLE = {"running": "green", "stopped": "dim", "down": "red", "port taken": "red"}
Services = Annotated[list[str] | None, typer.Argument(help=f"Some of: {', '.join(manager.NAMES)} (default: all).")]


def _fail(error: StackError) -> None:
    err.print(f"[red]error:[/] {error.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _table(rows: list[manager.ServiceStatus]) -> Table:
    table = Table(title=f"delab stack · profile {config.profile()}", title_justify="left")
    for column in ("service", "endpoint", "state"):
        table.add_column(column, no_wrap=True)
    table.add_column("UI", overflow="fold")
    details = any(row.detail for row in rows)
    if details:
        table.add_column("detail", overflow="fold")
    for row in rows:
        style = STATE_STYLE.get(row.state, "yellow")
        cells = [row.service, row.endpoint, f"[{style}]{row.state}[/]", row.ui_url or ""]
        table.add_row(*cells, *([row.detail] if details else []))
    return table


@app.command()
def up(services: Services = None) -> None:
    """Start the services (idempotent) and wait until each one really works."""
    try:
        with console.status("starting the stack…") as spinner:
            rows = manager.up(services, progress=lambda message: spinner.console.log(message, highlight=False))
    except StackError as error:
        _fail(error)
    console.print(_table(rows))


@app.command()
def build(
    service: Annotated[str, typer.Argument(help="What to build: kubernetes (the others are built by make setup).")],
) -> None:
    """Build a service that is built on first need (the Kubernetes plane: 10-25 min on 2 cores, once)."""
    from delab.stack.services import kubernetes

    if service != "kubernetes":
        _fail(StackError(f"`delab stack build` builds kubernetes only; {service!r} is built by `make setup`"))
    try:
        kubernetes.build(progress=lambda message: console.log(message, highlight=False))
    except StackError as error:
        _fail(error)
    console.print(f"kubernetes {kubernetes.VERSION}: built in {layout.build_dir()}")


@app.command()
def down(services: Services = None) -> None:
    """Stop what the stack started (nothing else)."""
    try:
        rows = manager.down(services)
    except StackError as error:
        _fail(error)
    console.print(_table(rows))


@app.command()
def status(services: Services = None) -> None:
    """Show each service's state, checked for real; exit code 1 when one is not running."""
    try:
        rows = manager.status(services)
    except StackError as error:
        _fail(error)
    console.print(_table(rows))
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


@app.command()
def logs(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(manager.NAMES)}.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
) -> None:
    """Print the end of a service's log."""
    try:
        console.print(manager.logs(service, lines), markup=False, highlight=False, soft_wrap=True)
    except StackError as error:
        _fail(error)


@app.command()
def reset(yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Stop the stack and wipe its data (topics, tables, objects, Flink state). Built jars stay."""
    if not yes and not typer.confirm(f"Stop the stack and delete everything under {layout.stack_dir()} but build/?"):
        raise typer.Abort()
    try:
        manager.reset()
    except StackError as error:
        _fail(error)
    console.print("stack state wiped")


# --- doctor ----------------------------------------------------------------------------------------------------


def _check_java() -> str | None:
    try:
        java = layout.java_bin()
    except MissingPrerequisite as error:
        return error.message
    major = layout.java_major(java)
    if major < 17:
        return (
            f"Java {major or '?'} at {java}; Kafka and Flink need 17+: apt install openjdk-17-jdk-headless, "
            "brew install openjdk@17 or conda install -c conda-forge openjdk=17 (then set JAVA_HOME)"
        )
    return None


def _check_registry_java() -> str | None:
    """The schema registry (on demand) runs on Java 21+, found apart from the stack's Java 17."""
    from delab.stack.services.registry import registry_java_home

    try:
        registry_java_home()
    except MissingPrerequisite as error:
        return error.message
    return None


def _check_tool(name: str, hint: str) -> str | None:
    return None if shutil.which(name) else f"{name} not found: {hint}"


def _check_go() -> str | None:
    go = shutil.which("go")
    if go is None and os.environ.get("DELAB_BUNDLE"):
        return None  # an offline bundle (scripts/bundle) brings the Go programs prebuilt
    if go is None:
        return (
            "Go not found (needed once, to build the S3 gateway): "
            "conda install -c conda-forge 'go>=1.25' or brew install go"
        )
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    parts = version.removeprefix("go").split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() and (int(parts[0]), int(parts[1])) < (1, 25):
        return f"{version} is too old to build versitygw (needs go 1.25+): conda install -c conda-forge 'go>=1.25'"
    return None


def _check_postgres() -> str | None:
    try:
        bindir = layout.pg_bindir()
    except MissingPrerequisite as error:
        return error.message
    missing = [tool for tool in ("initdb", "postgres") if not (bindir / tool).exists()]
    return f"{', '.join(missing)} missing in {bindir}: apt install postgresql" if missing else None


def _check_built() -> str | None:
    try:
        layout.build_path("kafka", "libs", what="the Kafka jars")
        layout.build_path("connect-plugins", "debezium-connector-postgres", what="the Debezium connector")
        layout.build_path("flink", "classpath", what="the Flink connector jars")
        layout.versitygw_bin()
        layout.build_path("registry", "quarkus-run.jar", what="the schema registry (Apicurio bundle)")
    except MissingPrerequisite as error:
        return error.message
    return None


def _check_flink() -> str | None:
    try:
        layout.flink_home()
    except MissingPrerequisite as error:
        return error.message
    return None


def _check_mlops() -> str | None:
    """The MLOps environment runs the on-demand MLflow service."""
    try:
        layout.mlops_python()
    except MissingPrerequisite as error:
        return error.message
    return None


def _check_ports() -> list[str]:
    """Ports held by processes the stack did not start (its own running services are fine)."""
    if config.profile() != "native":
        return []
    problems = []
    for row in manager.status():
        if row.state != "port taken":
            continue
        for label, port in manager.SERVICES[row.service].ports().items():
            if not manager.port_free(port):
                problems.append(manager.port_taken_message(row.service, label, port))
    return problems


def _check_disk() -> str | None:
    folder = layout.stack_dir()
    while not folder.exists():
        folder = folder.parent
    free_gb = shutil.disk_usage(folder).free / 1e9
    return None if free_gb >= 2 else f"only {free_gb:.1f} GB free under {folder}: the stack wants 2 GB or more"


def doctor() -> None:
    """Check the prerequisites of the stack and print one line per problem with what to run."""
    profile = config.profile()
    checks: list[tuple[str, str | list[str] | None]] = [("profile", None)]
    if profile == "native":
        checks += [
            ("Java 17+", _check_java()),
            ("Java 21+ (schema registry)", _check_registry_java()),
            (
                "Maven",
                _check_tool("mvn", "apt install maven, brew install maven or conda install -c conda-forge maven"),
            ),
            ("Go 1.25+", _check_go()),
            ("PostgreSQL 15+ binaries", _check_postgres()),
            ("PyFlink environment", _check_flink()),
            ("MLOps environment (MLflow, on demand)", _check_mlops()),
            ("built jars and binaries", _check_built()),
        ]
    elif profile == "docker":
        engine = docker.check_engine()
        checks += [
            ("Docker engine", engine),
            ("compose plugin", docker.check_compose_plugin()),
            ("free ports (docker)", docker.check_ports(list(manager.NAMES))),
        ]
    checks += [("free ports", _check_ports()), ("disk", _check_disk())]
    problems = 0
    console.print(f"profile: [bold]{profile}[/] (DELAB_STACK={os.environ.get('DELAB_STACK', '')!s})")
    for name, result in checks[1:]:
        lines = result if isinstance(result, list) else ([result] if result else [])
        if not lines:
            console.print(f"[green]ok[/]   {name}", highlight=False)
        for line in lines:
            problems += 1
            console.print(f"[red]fix[/]  {name}: {line}", highlight=False)
    if profile == "native":
        from delab.stack.services import kubernetes

        if kubernetes.built():
            console.print(f"[green]ok[/]   Kubernetes plane {kubernetes.VERSION} (on demand): built", highlight=False)
        else:  # built on first need (lab 07.03), so not a failure
            console.print(
                "[yellow]note[/] Kubernetes plane (on demand, lab 07.03) not built yet: "
                f"`delab stack build kubernetes` builds it once ({kubernetes.BUILD_MINUTES} min on 2 cores), "
                "or the lab's first cell does",
                highlight=False,
            )
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser and shutil.which("chromedriver"):
        console.print("[green]ok[/]   Chromium and chromedriver (the browser test of `make test`)", highlight=False)
    else:  # learners use any browser of their own: only `make test` needs these, so it is a note, not a failure
        console.print(
            "[yellow]note[/] Chromium and chromedriver not found — only `make test`'s browser test needs them: "
            "apt install chromium chromium-driver (Debian/Ubuntu; brew install --cask chromium chromedriver on macOS)",
            highlight=False,
        )
    if problems:
        raise typer.Exit(1)
