"""The student build (`make student`): what it holds, and that no reference solution is in it.

The copy is built and installed in a fresh venv once per session (the ``student_copy`` fixture in conftest.py);
tests/test_scales.py runs every notebook of it at `tiny` with the exercises unanswered.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "helpers" / "lessons" / "solutions"

#: Solution fragments that appear in the copy on purpose, with why. Anything else found there fails the test.
KNOWN = {
    # The check of 06.prunable_report compares the learner's query with the expected one (_EX_PLAYS_EXPECTED in
    # helpers/lessons/partitioning.py), which is the reference answer written out.
    "partitioning._prunable_report",
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def solution_fragments() -> list[tuple[str, str]]:
    """(solution, regex) for each statement of each reference solution and each string in it (30+ characters,
    whitespace-insensitive; an f-string's values match anything)."""
    found = []
    for path in sorted(SOLUTIONS.glob("*.py")):
        text = path.read_text()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, ast.FunctionDef) or not any(
                    isinstance(d, ast.Call) and getattr(d.func, "id", "") == "solution" for d in fn.decorator_list):
                continue
            body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) \
                else fn.body
            inner = {id(v) for n in ast.walk(fn) if isinstance(n, ast.JoinedStr) for v in n.values}
            who = f"{path.stem}.{fn.name}"
            for stmt in body:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    continue
                seg = _norm(ast.get_source_segment(text, stmt) or "")
                if len(seg) >= 30:
                    found.append((who, re.escape(seg)))
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner \
                            and len(_norm(node.value)) >= 30:
                        found.append((who, re.escape(_norm(node.value))))
                    elif isinstance(node, ast.JoinedStr) and sum(
                            len(_norm(v.value)) for v in node.values if isinstance(v, ast.Constant)) >= 30:
                        found.append((who, r"\s*".join(re.escape(_norm(v.value)) if isinstance(v, ast.Constant)
                                                       else ".+?" for v in node.values)))
    return found


def readable(path: Path) -> str:
    """A file's text, whitespace-normalised; for Python also each string literal as Python joins it."""
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        text += "\n" + "\n".join(n.value for n in ast.walk(ast.parse(text))
                                 if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return _norm(text)


@pytest.fixture(scope="module")
def copy(student_copy):
    return student_copy


def test_the_copy_holds_what_a_learner_needs_and_no_solutions(copy):
    root = copy.root
    for needed in ("README.md", "Makefile", "pyproject.toml", "LICENSE", "datasets/manifest.json",
                   "helpers/__init__.py", "helpers/exercises.py", "helpers/lessons/__init__.py"):
        assert (root / needed).exists(), needed
    assert not (root / "helpers" / "lessons" / "solutions").exists()
    assert not any("solutions" in p.parts for p in root.rglob("*.py") if ".venv" not in p.parts)
    assert not (root / "tests").exists() and not (root / "benchmarks").exists()
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in (root / "notebooks").glob("*.ipynb")) == lessons
    readme = (root / "README.md").read_text()
    assert "make lab" in readme and "not answered yet" in readme
    assert all(p[:-len(".ipynb")] in readme for p in lessons)


def test_notebooks_have_no_outputs_and_the_same_code(copy):
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        orig, mine = json.loads(path.read_text()), json.loads((copy.root / "notebooks" / path.name).read_text())
        assert [c["source"] for c in mine["cells"]] == [c["source"] for c in orig["cells"]], path.name
        code = [c for c in mine["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name
        assert "widgets" not in mine["metadata"], path.name


def test_no_module_of_the_copy_imports_the_solutions(copy):
    """The checks must work without the solutions: no import of them anywhere, not even lazily in a function."""
    importing = []
    for path in sorted((copy.root / "helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            mod = getattr(node, "module", None) or ""
            if any("solutions" in n for n in names + [mod]):
                importing.append(f"{path.relative_to(copy.root)}:{node.lineno}")
    assert not importing, importing


def test_every_lesson_module_imports_and_registers_its_exercises_in_the_copy(copy):
    code = ("import importlib, helpers.lessons as L, helpers.exercises as E\n"
            "[importlib.import_module('helpers.lessons.' + m) for m in L.MODULES.values()]\n"
            "print(len(E.all_exercises()))\n"
            "try:\n    import helpers.lessons.solutions\nexcept ImportError:\n    print('no solutions')\n")
    proc = subprocess.run([str(copy.python), "-c", code], capture_output=True, text=True, env=copy.env, cwd=copy.root)
    assert proc.returncode == 0, proc.stderr[-1500:]
    count, verdict = proc.stdout.split()[0], proc.stdout.strip().splitlines()[-1]
    assert int(count) >= 2 * len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) - 2
    assert verdict == "no solutions"
    # the copy is what its venv runs, not the checkout's helpers
    where = subprocess.run([str(copy.python), "-c", "import helpers; print(helpers.__file__)"], capture_output=True,
                           text=True, env=copy.env, cwd="/").stdout.strip()
    assert where.startswith(str(copy.root)), where


def test_no_solution_code_appears_anywhere_in_the_copy(copy):
    fragments = solution_fragments()
    assert len(fragments) >= 40  # every solution file contributes
    # The matcher works: each fragment is found in the checkout's own solutions.
    sources = {p.stem: readable(p) for p in SOLUTIONS.glob("*.py")}
    missed = [who for who, rx in fragments if not re.search(rx, sources[who.split(".")[0]])]
    assert not missed, missed
    files = [p for p in copy.root.rglob("*") if p.is_file() and ".venv" not in p.relative_to(copy.root).parts
             and "var" not in p.relative_to(copy.root).parts[:1] and p.suffix not in (".gz", ".png")
             and "egg-info" not in str(p)]
    texts = {p: readable(p) for p in files}
    leaks = sorted({f"{who} in {p.relative_to(copy.root)}" for who, rx in fragments if who not in KNOWN
                    for p, t in texts.items() if re.search(rx, t)})
    assert not leaks, "solution code in the student copy:\n" + "\n".join(leaks)
    # Not vacuous: a solution file dropped into the copy is caught.
    planted = next(iter(sorted(SOLUTIONS.glob("*.py"))))
    t = readable(planted)
    assert any(re.search(rx, t) for who, rx in fragments if who not in KNOWN)


def test_the_copy_is_small_and_installed_quickly(copy):
    size = sum(p.stat().st_size for p in copy.root.rglob("*") if p.is_file()
               and ".venv" not in p.relative_to(copy.root).parts and "var" != p.relative_to(copy.root).parts[0])
    assert 100_000 < size < 20_000_000, size
    print(f"student copy: {size / 1e6:.2f} MB; fresh venv + pip install -e: {copy.install_seconds:.0f} s")
