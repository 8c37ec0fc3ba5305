"""The package layout keeps its layers: nothing imports upward, no two modules import each other.

Every ``import`` in ``helpers/`` is read from the source (lazy imports inside functions included), so the test
needs no database and fails on the line that breaks the rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helpers.lessons

PKG = Path(__file__).resolve().parent.parent / "helpers"
RANK = {"core": 0, "data": 1, "toolkit": 2, "bench": 3, "lessons": 3, "workshop": 3, "solutions": 4, "build": 4,
        "cli": 5}
#: Layers that still may not import each other although the ranks would allow it (the workshop runs notebooks, never
#: lesson code; the builds read the lessons' exercises but must never carry a solution into the student copy).
APART = {("workshop", "lessons"), ("workshop", "solutions"), ("workshop", "bench"), ("build", "solutions")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if module in ("helpers", "helpers.__main__"):
        return "cli"
    if len(parts) == 2:
        return "toolkit"
    if parts[1] == "lessons" and len(parts) > 2 and parts[2] == "solutions":
        return "solutions"
    return parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported helpers module) for every import statement in the file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("helpers")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_name(path).split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("helpers"):
                continue
            for a in node.names:  # `from helpers.lessons import indexing` imports a module, not a name
                sub = f"{mod}.{a.name}"
                found.append((node.lineno, sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                              or (PKG.parent / sub.replace(".", "/")).is_dir() else mod))
    return found


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: imports(p) for m, p in MODULES.items()}


def test_every_module_has_a_known_layer():
    assert {layer(m) for m in MODULES} <= set(RANK)
    assert set(helpers.lessons.MODULES.values()) == {m.split(".")[-1] for m in MODULES
                                                     if layer(m) == "lessons" and m != "helpers.lessons"}


def upward(module: str, targets: list[tuple[int, str]]) -> list[str]:
    """The imports of ``module`` that break the layering rule."""
    wrong = []
    mine = layer(module)
    for line, target in targets:
        if target == "helpers" or not target.startswith("helpers"):
            continue
        theirs = layer(target)
        if (RANK[theirs] > RANK[mine] and not (mine == "solutions" and target.startswith("helpers.lessons"))) \
                or (mine, theirs) in APART:
            wrong.append(f"line {line}: {module} ({mine}) imports {target} ({theirs})")
        elif mine == theirs == "lessons" and "helpers.lessons" not in (module, target):
            wrong.append(f"line {line}: lesson {module} imports lesson {target}")
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[str]:
    """Every import cycle, each once, starting from its smallest module name."""
    found = []

    def visit(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                found.append(" -> ".join(path + [nxt]))
            elif nxt not in path and nxt > path[0]:
                visit(nxt, path + [nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    wrong = upward(module, [(line, t) for line, t in GRAPH[module] if t in MODULES])
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = {m: {t for _, t in GRAPH[m] if t in MODULES and t != m and not m.startswith(t + ".")} for m in MODULES}
    edges["helpers"] = set()  # `from helpers import lesson` is the notebooks' entry point, not a dependency
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_rules_catch_what_they_guard(tmp_path):
    """Not vacuous: a lazy upward import, a lesson importing a lesson and a two-module cycle are all found."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from helpers.lessons import indexing\n")
    assert imports(bad) == [(4, "helpers.lessons.indexing")]
    assert upward("helpers.db", imports(bad)) == ["line 4: helpers.db (toolkit) imports helpers.lessons.indexing (lessons)"]
    assert upward("helpers.core.server", [(1, "helpers.data.generate")])
    assert upward("helpers.lessons.partitioning", [(1, "helpers.lessons.indexing")])
    assert upward("helpers.workshop.loadtest", [(1, "helpers.lessons.indexing")])
    assert not upward("helpers.workshop.loadtest", [(1, "helpers.db"), (2, "helpers.data.datasets")])
    assert upward("helpers.lessons.indexing", [(1, "helpers.lessons.solutions.indexing")])
    assert not upward("helpers.lessons.solutions.indexing", [(1, "helpers.lessons.indexing"), (2, "helpers.db")])
    assert upward("helpers.build.guide", [(1, "helpers.lessons.solutions.indexing")])
    assert not upward("helpers.build.guide", [(1, "helpers.lessons.indexing"), (2, "helpers.exercises")])
    assert upward("helpers.lessons.indexing", [(1, "helpers.build.common")])
    assert cycles({"helpers.plans": {"helpers.timing"}, "helpers.timing": {"helpers.plans"}}) == [
        "helpers.plans -> helpers.timing -> helpers.plans"]
