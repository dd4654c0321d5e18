"""The curriculum map (curriculum.yaml at the project root) as typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from delab import config

KERNELS = ("delab", "delab-flink", "delab-airflow", "delab-mlops")
STATUSES = ("available", "planned")


@dataclass(frozen=True)
class Lab:
    module_id: str
    module_slug: str
    id: str
    slug: str
    title: str
    status: str
    kernel: str
    services: tuple[str, ...]
    topics: tuple[str, ...]
    exercises: tuple[str, ...]

    @property
    def key(self) -> str:
        """``m00.l02`` — the prefix of this lab's exercise ids."""
        return f"m{self.module_id}.l{self.id}"

    @property
    def stem(self) -> str:
        return f"{self.module_id}_{self.module_slug}/{self.id}_{self.slug}"

    @property
    def source(self) -> Path:
        return config.project_root() / "solutions" / f"{self.stem}.py"

    @property
    def solution_notebook(self) -> Path:
        return config.project_root() / "solutions" / f"{self.stem}.ipynb"

    @property
    def lab_notebook(self) -> Path:
        return config.project_root() / "labs" / f"{self.stem}.ipynb"


@dataclass(frozen=True)
class Module:
    id: str
    slug: str
    title: str
    area: str | None
    labs: tuple[Lab, ...]


@dataclass(frozen=True)
class Curriculum:
    topics: dict[str, str]  # topic id -> seed text
    areas: dict[str, tuple[str, list[str]]]  # area id -> (title, topic ids)
    modules: tuple[Module, ...] = field(default_factory=tuple)

    @property
    def labs(self) -> list[Lab]:
        return [lab for module in self.modules for lab in module.labs]

    def lab(self, key: str) -> Lab:
        for lab in self.labs:
            if lab.key == key:
                return lab
        raise KeyError(key)

    def covered_topics(self, status: str = "available") -> set[str]:
        return {t for lab in self.labs if lab.status == status for t in lab.topics}


def load(path: Path | None = None) -> Curriculum:
    """Parse curriculum.yaml (the project's by default)."""
    path = path or config.project_root() / "curriculum.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    topics: dict[str, str] = {}
    areas: dict[str, tuple[str, list[str]]] = {}
    for area in raw["areas"]:
        ids = [t["id"] for t in area["topics"]]
        areas[area["id"]] = (area["title"], ids)
        topics.update({t["id"]: t["text"] for t in area["topics"]})
    modules = []
    for m in raw["modules"]:
        labs = tuple(
            Lab(
                module_id=m["id"],
                module_slug=m["slug"],
                id=lab["id"],
                slug=lab["slug"],
                title=lab["title"],
                status=lab["status"],
                kernel=lab.get("kernel", "delab"),
                services=tuple(lab.get("services", [])),
                topics=tuple(lab.get("topics", [])),
                exercises=tuple(lab.get("exercises", [])),
            )
            for lab in m["labs"]
        )
        modules.append(Module(m["id"], m["slug"], m["title"], m.get("area"), labs))
    return Curriculum(topics, areas, tuple(modules))


@cache
def current() -> Curriculum:
    """The project's curriculum, parsed once per process."""
    return load()


def problems(curriculum: Curriculum) -> list[str]:
    """Everything wrong with a curriculum map, one line each (empty when it is consistent)."""
    out: list[str] = []
    if len(curriculum.topics) != 49 or any(len(ids) != 7 for _, ids in curriculum.areas.values()):
        out.append(f"the seed has 7 areas x 7 topics; the map has {len(curriculum.topics)} topics")
    mapped = {t for lab in curriculum.labs for t in lab.topics}
    out += [f"topic {t} is taught by no lab (planned or available)" for t in curriculum.topics if t not in mapped]
    seen_ids: set[str] = set()
    for lab in curriculum.labs:
        where = f"lab {lab.key} ({lab.slug})"
        out += [f"{where}: unknown topic {t}" for t in lab.topics if t not in curriculum.topics]
        if lab.status not in STATUSES:
            out.append(f"{where}: status {lab.status!r} is not one of {STATUSES}")
        if lab.kernel not in KERNELS:
            out.append(f"{where}: kernel {lab.kernel!r} is not one of {KERNELS}")
        for e in lab.exercises:
            if not e.startswith(lab.key + ".e"):
                out.append(f"{where}: exercise id {e} does not start with {lab.key}.e")
            if e in seen_ids:
                out.append(f"{where}: exercise id {e} is listed twice")
            seen_ids.add(e)
        if lab.status == "available":
            if not lab.source.is_file():
                out.append(f"{where}: available but {lab.source.relative_to(config.project_root())} is missing")
            if len(lab.exercises) < 2:
                out.append(f"{where}: an available lab needs graded exercises")
    for module in curriculum.modules:
        if module.area and module.area not in curriculum.areas:
            out.append(f"module {module.id}: unknown area {module.area}")
    return out


# ------------------------------------------------------------------------------------- README module table

TABLE_START = "<!-- module-map:start (generated from curriculum.yaml by `delab notebooks`; do not edit) -->"
TABLE_END = "<!-- module-map:end -->"


def module_table(course: Curriculum) -> str:
    """The README's module map as Markdown: one row per module, its seed topics and its labs."""
    rows = ["| Module | Seed topics taught | Labs | Status |", "|---|---|---|---|"]
    for module in course.modules:
        topic_ids = list(dict.fromkeys(t for lab in module.labs for t in lab.topics))
        topics = "; ".join(course.topics[t].split(":")[0] for t in topic_ids) or "— (how the course works)"
        labs = "<br>".join(
            f"{lab.id} {lab.title.split(' — ')[0]}" + ("" if lab.status == "available" else " *(planned)*")
            for lab in module.labs
        )
        available = sum(lab.status == "available" for lab in module.labs)
        status = (
            "available"
            if available == len(module.labs)
            else f"{available} of {len(module.labs)} labs available"
            if available
            else "planned"
        )
        rows.append(f"| **{module.id}** {module.title} | {topics} | {labs} | {status} |")
    taught = course.covered_topics()
    rows.append("")
    rows.append(
        f"Seed coverage: {len(taught)} of {len(course.topics)} topics taught by an available lab; "
        f"every topic is mapped to a lab in `curriculum.yaml`."
    )
    return "\n".join(rows)


def sync_readme(check: bool = False, readme: Path | None = None) -> bool:
    """Rewrite (or with ``check``, compare) the module map in README.md; True when it was already current."""
    readme = readme or config.project_root() / "README.md"
    text = readme.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        raise ValueError(f"{readme.name} lacks the module-map markers {TABLE_START!r} … {TABLE_END!r}")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    new = f"{head}{TABLE_START}\n{module_table(load(readme.parent / 'curriculum.yaml'))}\n{TABLE_END}{tail}"
    if new == text:
        return True
    if not check:
        readme.write_text(new, encoding="utf-8")
    return False
