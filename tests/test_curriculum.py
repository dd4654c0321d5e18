"""The curriculum map agrees with the seed, the labs on disk and the README."""

from __future__ import annotations

import re

from delab import config, curriculum, labgen

COURSE = curriculum.current()
CHECKS_DIR = config.project_root() / "src/delab/checks"
CHECK_FILES = sorted([*CHECKS_DIR.glob("m[0-9][0-9].py"), *CHECKS_DIR.glob("m[0-9][0-9]/*.py")])


def module_check_text(module_id: str) -> str:
    return "\n".join(
        p.read_text() for p in CHECK_FILES if p.stem == f"m{module_id}" or p.parent.name == f"m{module_id}"
    )


def test_map_has_no_problems():
    assert curriculum.problems(COURSE) == []


def test_seed_has_7_areas_of_7_topics_each_mapped_to_a_lab():
    assert len(COURSE.areas) == 7 and all(len(ids) == 7 for _, ids in COURSE.areas.values())
    mapped = {t for lab in COURSE.labs for t in lab.topics}
    assert set(COURSE.topics) <= mapped


def test_problems_catches_a_broken_map(tmp_path):
    text = (config.project_root() / "curriculum.yaml").read_text()
    broken = text.replace("topics: [orchestration.airflow]", "topics: [orchestration.airflw]", 1)
    broken = broken.replace("exercises: [m00.l01.e1, m00.l01.e2]", "exercises: [m00.l01.e1, m00.l02.e1]", 1)
    (tmp_path / "curriculum.yaml").write_text(broken)
    found = "\n".join(curriculum.problems(curriculum.load(tmp_path / "curriculum.yaml")))
    assert "unknown topic orchestration.airflw" in found
    assert "does not start with m00.l01.e" in found and "listed twice" in found


def test_every_module_numbered_and_every_area_has_a_module():
    assert [m.id for m in COURSE.modules] == [f"{i:02d}" for i in range(8)]
    assert {m.area for m in COURSE.modules if m.area} == set(COURSE.areas)


def test_available_labs_exist_and_every_source_is_listed():
    listed = {lab.source for lab in COURSE.labs if lab.status == "available"}
    assert listed == set(labgen.sources())
    for lab in COURSE.labs:
        if lab.status == "available":
            assert lab.lab_notebook.is_file() and lab.solution_notebook.is_file()


def test_each_exercise_id_appears_in_its_notebook_and_nowhere_else():
    sources = {lab.source: lab.source.read_text() for lab in COURSE.labs if lab.status == "available"}
    checks_text = "\n".join(p.read_text() for p in CHECK_FILES)
    for lab in COURSE.labs:
        for exercise_id in lab.exercises:
            assert f'@exercise("{exercise_id}")' in checks_text, f"no check for {exercise_id}"
            module_checks = module_check_text(lab.module_id)
            check_names = re.findall(rf'@exercise\("{re.escape(exercise_id)}"\)\ndef (\w+)', module_checks)
            assert len(check_names) == 1, f"{exercise_id} needs exactly one check"
            calls = [path for path, text in sources.items() if f"check.m{lab.module_id}.{check_names[0]}(" in text]
            assert calls == [lab.source], f"{exercise_id} ({check_names[0]}) must be called in {lab.source.name} only"


def test_check_names_are_unique_within_a_module():
    # check.mNN.<name> finds a check by name across a module's lab files: two labs must not share one
    for module in COURSE.modules:
        names = re.findall(r'@exercise\("[\w.]+"\)\ndef (\w+)', module_check_text(module.id))
        assert len(names) == len(set(names)), f"module {module.id} defines a check name twice: {sorted(names)}"


def test_every_check_is_listed_in_the_map():
    listed = {e for lab in COURSE.labs for e in lab.exercises}
    defined = set(re.findall(r'@exercise\("([\w.]+)"\)', "\n".join(p.read_text() for p in CHECK_FILES)))
    assert defined == listed


def test_readme_module_map_is_current():
    assert curriculum.sync_readme(check=True), "run `make notebooks` to regenerate the README's module map"


def test_coverage_report(capsys):
    taught = COURSE.covered_topics()
    planned = {t for lab in COURSE.labs for t in lab.topics} - taught
    with capsys.disabled():
        print(
            f"\nseed coverage: {len(taught)} of {len(COURSE.topics)} topics taught by an available lab, "
            f"{len(planned)} planned"
        )
    assert len(taught) + len(planned) == len(COURSE.topics)
