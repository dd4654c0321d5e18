"""The `delab` command: notebooks, progress, datasets, kernels — and the stack (`delab stack ...`, `delab doctor`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from delab import config

app = typer.Typer(
    help="Data Engineering & ETL Labs — helper commands.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Stop with one actionable line on stderr and exit code 1."""
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def notebooks(check: Annotated[bool, typer.Option("--check", help="Only compare; fail listing stale files.")] = False):
    """Generate solutions/*.ipynb and labs/*.ipynb from the percent sources, and the README's module map."""
    from delab import curriculum, labgen

    try:
        stale = labgen.sync(check=check)
        readme_current = curriculum.sync_readme(check=check)
    except (labgen.LabSourceError, ValueError) as error:
        fail(str(error))
    if not readme_current:
        stale.append("README.md (module map)")
    if check:
        if stale:
            for path in stale:
                err.print(f"stale: {path}", highlight=False)
            fail(
                f"{len(stale)} generated file(s) out of date with solutions/ or curriculum.yaml: "
                "run `make notebooks` and commit the result"
            )
        console.print("notebooks and README module map are up to date")
    else:
        console.print(f"wrote {len(stale)} file(s)" + (": " + ", ".join(stale) if stale else ""))


@app.command()
def progress(
    module: Annotated[str | None, typer.Option(help="Only this module, e.g. 00.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the scoreboard as an HTML report here.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Forget all recorded verdicts.")] = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write your verdicts to this JSON file, to hand in.")
    ] = None,
    learner: Annotated[str | None, typer.Option(help="Your name in an --export (default: your login).")] = None,
    import_: Annotated[
        list[Path] | None,
        typer.Option("--import", help="Merge a scoreboard written by --export into yours (repeatable)."),
    ] = None,
):
    """Show your scoreboard: per module and lab, which exercises you passed."""
    from delab import grading
    from delab import progress as scoreboard

    if reset:
        grading.forget()
        console.print("progress cleared")
        return
    if export is not None:
        count = scoreboard.export(export, learner=learner)
        console.print(f"{count} verdicts written to {export} — hand this file in")
        return
    if import_:
        try:
            added = scoreboard.import_(import_)
        except ValueError as error:
            fail(str(error))
        console.print(f"{added} new verdicts merged from {len(import_)} file(s)")
    scoreboard.render(module=module, html=html, console=Console(record=html is not None))
    if html:
        console.print(f"report written to {html}")


@app.command()
def grade(
    submissions: Annotated[
        list[Path], typer.Argument(help="Notebooks or exported scoreboards, or folders of one sub-folder per learner.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for gradebook.csv, gradebook.html and work files.")] = Path(
        "gradebook"
    ),
    time_limit: Annotated[float, typer.Option(help="Seconds allowed for each whole notebook.")] = 300.0,
    lab: Annotated[str | None, typer.Option(help="Only this lab counts, e.g. m00.l01 (others: wrong lab).")] = None,
):
    """Grade learners' submitted lab notebooks against the stack and write a gradebook (CSV and HTML)."""
    from delab import gradebook

    try:
        found = gradebook.collect(submissions)
    except FileNotFoundError as error:
        fail(str(error))
    if not found:
        fail("no submissions found: give notebook files, or a folder with one sub-folder per learner")
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"grading {len(found)} submission(s), one at a time (limit {time_limit:.0f} s each)")

    def say(result: gradebook.Result) -> None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(gradebook.summary([result])["verdicts"].items()))
        verdict = result.problem or counts or "no exercises"
        flags = f" [yellow]flagged: {'; '.join(result.flags)}[/]" if result.flags else ""
        console.print(
            f"{result.submission.learner:>16}  {result.submission.path.name}  {result.lab or '-'}  {verdict}{flags}"
            f"  ({result.seconds:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )

    try:
        results = gradebook.grade(found, out.resolve() / "work", time_limit=time_limit, only_lab=lab, progress=say)
    except Exception as error:  # the stack could not be started: nothing can be graded
        fail(f"{error}")
    csv_path = gradebook.write_csv(results, out / "gradebook.csv")
    html_path = gradebook.write_html(results, out / "gradebook.html")
    hardest = gradebook.hardest(results)[:3]
    if hardest:
        console.print("hardest: " + ", ".join(f"{e} ({p}/{n} passed)" for e, p, n, _ in hardest), highlight=False)
    console.print(f"gradebook written to {csv_path} and {html_path}")


@app.command()
def data(
    out: Annotated[Path, typer.Option(help="Folder to write the tables to.")] = Path("datasets/shop"),
    seed: int = 42,
    scale: Annotated[float, typer.Option(help="1.0 ≈ 20,000 orders; scale up for performance labs.")] = 1.0,
    fmt: Annotated[str, typer.Option(help="parquet or csv")] = "parquet",
):
    """Write the generated shop tables to files (deterministic for a given seed and scale)."""
    from delab import datasets

    if fmt not in ("parquet", "csv"):
        fail(f"--fmt must be parquet or csv, not {fmt!r}")
    paths = datasets.shop(seed=seed, scale=scale).write(out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"{name:12} {path}")


@app.command()
def info():
    """Where things are: project root, state folder, stack profile, endpoints."""
    console.print(f"project root  {config.project_root()}")
    console.print(f"state folder  {config.state_dir()}")
    try:
        console.print(f"stack profile {config.profile()}")
    except ValueError as error:
        fail(str(error))
    pg, s3, kafka, flink = config.postgres(), config.s3(), config.kafka(), config.flink()
    console.print(f"postgres      {pg.host}:{pg.port}/{pg.database}")
    console.print(f"kafka         {kafka.bootstrap_servers}   connect {kafka.connect_url}")
    console.print(f"s3            {s3.endpoint} bucket {s3.bucket}")
    console.print(f"flink         {flink.rest_url}")
    console.print(f"registry      {config.schema_registry().ccompat_url} (Confluent-compatible API)")


platform_app = typer.Typer(
    help="The write steps of the data-platform modules (lab 07.07): run by OpenTofu's local-exec provisioners.",
    no_args_is_help=True,
)


def _platform_step(action: str) -> None:
    import os

    from delab.iac.platform import SPEC_VARIABLE, run_step
    from delab.stack.errors import StackError

    try:
        print(run_step(action, os.environ.get(SPEC_VARIABLE)))
    except StackError as error:
        # plain, unwrapped: OpenTofu quotes this line in its provisioner error
        print(f"error: {error.message}", file=sys.stderr)
        raise typer.Exit(1) from None


@platform_app.command("create")
def platform_create():
    """Create (idempotently) what the JSON in DELAB_PLATFORM_SPEC describes."""
    _platform_step("create")


@platform_app.command("delete")
def platform_delete():
    """Delete (idempotently) what the JSON in DELAB_PLATFORM_SPEC describes."""
    _platform_step("delete")


app.add_typer(platform_app, name="platform")


def _mount_stack() -> None:
    """`delab stack ...` and `delab doctor` live in delab.stack (the services room)."""
    try:
        from delab.stack.cli import app as stack_app
        from delab.stack.cli import doctor
    except ImportError:
        return
    app.add_typer(stack_app, name="stack", help="Start, stop and inspect the data stack.")
    app.command("doctor", help="Check prerequisites, ports and disk; say what to install.")(doctor)


_mount_stack()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
