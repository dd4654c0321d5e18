"""Lab generation: placeholders instead of answers, deterministic output, and --check naming stale files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from delab import config, labgen

HEADER = (
    '# ---\n# jupyter:\n#   kernelspec: {name: delab, display_name: "Python 3 (delab)", language: python}\n# ---\n\n'
)


def write_source(root: Path, body: str, name: str = "00_orientation/01_demo.py") -> Path:
    path = root / "solutions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def cells(text: str) -> list[str]:
    return [c["source"] for c in json.loads(text)["cells"]]


def test_assignment_answer_becomes_placeholder(tmp_path):
    src = write_source(tmp_path, "# %%\nx = 1\n### BEGIN SOLUTION\nanswer = x + 41\n### END SOLUTION\nanswer\n")
    built = labgen.build(src)
    assert cells(built.solution) == ["x = 1\nanswer = x + 41\nanswer"]
    assert cells(built.lab) == ["x = 1\n# TODO: replace ... with your answer\nanswer = ...\nanswer"]


def test_function_answer_keeps_signature_and_docstring(tmp_path):
    body = (
        '# %%\n### BEGIN SOLUTION\nimport math\n\ndef area(r: float) -> float:\n    """Area of a circle."""\n'
        "    return math.pi * r**2\n### END SOLUTION\n"
    )
    lab = cells(labgen.build(write_source(tmp_path, body)).lab)[0]
    assert "def area(r: float) -> float:" in lab and "'Area of a circle.'" in lab
    assert "raise NotImplementedError" in lab and "math.pi" not in lab and "import math" not in lab


def test_decorated_function_keeps_its_decorators_in_order(tmp_path):
    body = "# %%\n### BEGIN SOLUTION\n@first\n@second(1)\ndef job(x):\n    return x\n### END SOLUTION\n"
    lab = cells(labgen.build(write_source(tmp_path, body)).lab)[0]
    assert lab.splitlines()[1:] == ["@first", "@second(1)", "def job(x):", "    raise NotImplementedError"]


def test_indented_block_keeps_indentation(tmp_path):
    body = "# %%\nwith open(__file__) as f:\n    ### BEGIN SOLUTION\n    size = len(f.read())\n    ### END SOLUTION\n"
    lab = cells(labgen.build(write_source(tmp_path, body)).lab)[0]
    assert lab.splitlines()[1:] == ["    # TODO: replace ... with your answer", "    size = ..."]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("# %%\n### BEGIN SOLUTION\nprint(1)\n### END SOLUTION\n", "may only assign"),
        ("# %%\n### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("# %%\nx = 1\n### END SOLUTION\n", "without"),
        ("# %%\n### BEGIN SOLUTION\nd['k'] = 1\n### END SOLUTION\n", "plain names"),
    ],
)
def test_bad_blocks_are_refused_with_a_clear_message(tmp_path, body, message):
    with pytest.raises(labgen.LabSourceError, match=message):
        labgen.build(write_source(tmp_path, body))


def test_missing_kernelspec_is_refused(tmp_path):
    path = tmp_path / "solutions" / "00_x" / "01_y.py"
    path.parent.mkdir(parents=True)
    path.write_text("# %%\nx = 1\n")
    with pytest.raises(labgen.LabSourceError, match="kernelspec"):
        labgen.build(path)


def test_output_is_deterministic_with_stable_ids_and_no_outputs(tmp_path):
    src = write_source(tmp_path, "# %% [markdown]\n# Title\n\n# %%\nx = 1\n\n# %%\nx = 1\n")
    first, second = labgen.build(src), labgen.build(src)
    assert first == second
    nb = json.loads(first.lab)
    ids = [c["id"] for c in nb["cells"]]
    assert len(set(ids)) == len(ids)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in nb["cells"])
    assert nb["metadata"]["kernelspec"]["name"] == "delab"


def test_check_names_stale_notebook_after_source_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("DELAB_ROOT", str(tmp_path))
    config.project_root.cache_clear()
    try:
        src = write_source(tmp_path, "# %%\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\n")
        assert len(labgen.sync(root=tmp_path)) == 2
        assert labgen.sync(check=True, root=tmp_path) == []
        src.write_text(src.read_text().replace("42", "43"))
        stale = labgen.sync(check=True, root=tmp_path)
        assert stale == ["solutions/00_orientation/01_demo.ipynb"]  # the lab's placeholder did not change
        (tmp_path / "labs" / "00_orientation" / "99_gone.ipynb").write_text("{}")
        assert "labs/00_orientation/99_gone.ipynb (no source)" in labgen.sync(check=True, root=tmp_path)
    finally:
        config.project_root.cache_clear()


def test_project_notebooks_are_in_sync():
    assert labgen.sync(check=True) == [], "run `make notebooks`"


def test_project_labs_hold_no_answers():
    for source in labgen.sources():
        solution_nb, lab_nb = labgen.targets(source)
        lab_text = lab_nb.read_text()
        assert labgen.BEGIN not in lab_text and labgen.BEGIN not in solution_nb.read_text()
        assert "= ..." in lab_text or "raise NotImplementedError" in lab_text, f"{lab_nb} has no placeholder"


def test_copying_the_project_sources_rebuilds_identical_notebooks(tmp_path):
    root = config.project_root()
    shutil.copytree(root / "solutions", tmp_path / "solutions", ignore=shutil.ignore_patterns("*.ipynb"))
    labgen.sync(root=tmp_path)
    for source in labgen.sources(tmp_path):
        for new, old in zip(
            labgen.targets(source, tmp_path), labgen.targets(root / source.relative_to(tmp_path)), strict=True
        ):
            assert new.read_bytes() == old.read_bytes()
