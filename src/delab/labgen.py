"""Build solution and lab notebooks from the percent-format sources in solutions/.

A source ``solutions/00_orientation/02_first_data_task_duckdb.py`` becomes
``solutions/00_orientation/02_first_data_task_duckdb.ipynb`` (everything) and
``labs/00_orientation/02_first_data_task_duckdb.ipynb`` (each ``### BEGIN SOLUTION`` … ``### END SOLUTION`` block
replaced by a placeholder). Output is deterministic: stable cell ids, no outputs, sorted JSON keys — so
``--check`` can compare bytes and name every stale file.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

from delab import config

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PLACEHOLDER_NOTE = "# TODO: replace ... with your answer"
KERNELS = {
    "delab": "Python 3 (delab)",
    "delab-flink": "Python 3 (delab-flink · PyFlink)",
    "delab-airflow": "Python 3 (delab-airflow · Airflow)",
    "delab-mlops": "Python 3 (delab-mlops · MLflow, KServe)",
}


class LabSourceError(ValueError):
    """A solution source that cannot be turned into a lab (bad markers, a block that cannot be stubbed)."""


# --------------------------------------------------------------------------------------------------- stubs


def _stub_block(block: str, where: str) -> str:
    """The lab's replacement for one solution block: names bound to ``...``, functions raising NotImplementedError."""
    indent = re.match(r"[ \t]*", block.splitlines()[0] if block.strip() else "").group(0)
    code = textwrap.dedent(block)
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise LabSourceError(f"{where}: the solution block does not parse: {error}") from None
    lines: list[str] = [PLACEHOLDER_NOTE]
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
                if not names or not isinstance(target, ast.Name | ast.Tuple):
                    raise LabSourceError(
                        f"{where}: the solution block assigns to {ast.unparse(target)}; "
                        "assign plain names so the lab can stub them"
                    )
                lines += [f"{name} = ..." for name in names if f"{name} = ..." not in lines]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines += [f"@{ast.unparse(decorator)}" for decorator in node.decorator_list]
            bare = copy.copy(node)
            bare.decorator_list = []
            lines.append(ast.unparse(bare).splitlines()[0])
            doc = ast.get_docstring(node)
            if doc:
                lines.append(textwrap.indent(repr(doc) if "\n" not in doc else f'"""{doc}"""', "    "))
            lines.append("    raise NotImplementedError")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            continue  # the learner imports what their answer needs
        else:
            raise LabSourceError(
                f"{where}: a solution block may only assign names, define functions or import "
                f"(found {type(node).__name__} at line {node.lineno}); move the rest out of it"
            )
    return textwrap.indent("\n".join(lines), indent)


def _strip_solutions(source: str, where: str) -> str:
    out: list[str] = []
    block: list[str] | None = None
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if block is not None:
                raise LabSourceError(f"{where}: {BEGIN} inside another solution block")
            block = []
            indent = line[: len(line) - len(line.lstrip())]
        elif marker == END:
            if block is None:
                raise LabSourceError(f"{where}: {END} without {BEGIN}")
            out.append(_stub_block("\n".join(block) or indent + "pass", where))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise LabSourceError(f"{where}: {BEGIN} is never closed")
    return "\n".join(out)


def _drop_markers(source: str) -> str:
    """The solution notebook keeps the answer but not the marker lines."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


# ------------------------------------------------------------------------------------------------ notebooks


def _cell_id(stem: str, index: int, source: str, taken: set[str]) -> str:
    base = hashlib.sha1(f"{stem}\n{source}".encode()).hexdigest()[:10]
    cell_id, n = base, 1
    while cell_id in taken:
        cell_id, n = f"{base}-{n}", n + 1
    taken.add(cell_id)
    return cell_id


def _notebook(cells: list[tuple[str, str]], kernel: str, stem: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": kernel, "display_name": KERNELS[kernel], "language": "python"},
        "language_info": {"name": "python"},
    }
    taken: set[str] = set()
    for kind, source in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = _cell_id(stem, len(nb.cells), source, taken)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Built:
    solution: str
    lab: str


def build(source_path: Path) -> Built:
    """Both notebooks of one percent source, as JSON text."""
    root = config.project_root()
    where = str(source_path.relative_to(root) if source_path.is_relative_to(root) else source_path)
    parsed = jupytext.reads(source_path.read_text(encoding="utf-8"), fmt="py:percent")
    kernel = parsed.metadata.get("kernelspec", {}).get("name")
    if kernel not in KERNELS:
        raise LabSourceError(f"{where}: the jupytext header must name a kernelspec, one of {', '.join(KERNELS)}")
    solution_cells, lab_cells = [], []
    for index, cell in enumerate(parsed.cells):
        src = cell.source
        if cell.cell_type == "code" and (BEGIN in src or END in src):
            solution_cells.append(("code", _drop_markers(src)))
            lab_cells.append(("code", _strip_solutions(src, f"{where} cell {index + 1}")))
        else:
            solution_cells.append((cell.cell_type, src))
            lab_cells.append((cell.cell_type, src))
    stem = source_path.stem
    return Built(_notebook(solution_cells, kernel, stem), _notebook(lab_cells, kernel, stem))


def sources(root: Path | None = None) -> list[Path]:
    root = root or config.project_root()
    return sorted(p for p in (root / "solutions").glob("[0-9][0-9]_*/[0-9][0-9]_*.py"))


def targets(source_path: Path, root: Path | None = None) -> tuple[Path, Path]:
    root = root or config.project_root()
    relative = source_path.relative_to(root / "solutions").with_suffix(".ipynb")
    return root / "solutions" / relative, root / "labs" / relative


def sync(check: bool = False, root: Path | None = None) -> list[str]:
    """Write (or with ``check``, only compare) every generated notebook; return the stale/orphan paths."""
    root = root or config.project_root()
    stale: list[str] = []
    expected: set[Path] = set()
    for source_path in sources(root):
        built = build(source_path)
        for path, text in zip(targets(source_path, root), (built.solution, built.lab), strict=True):
            expected.add(path)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(root)))
                if not check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
    for folder in ("solutions", "labs"):
        for orphan in sorted((root / folder).glob("[0-9][0-9]_*/*.ipynb")):
            if orphan not in expected:
                stale.append(f"{orphan.relative_to(root)} (no source)")
                if not check:
                    orphan.unlink()
    return stale
