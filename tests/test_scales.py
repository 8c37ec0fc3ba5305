"""Every lesson runs top to bottom without an error at the smallest scale the README offers (`tiny`), from the
student copy.

Stored outputs are compared only at `default` (nbval); here each notebook is executed in a real kernel with
PDW_SCALE=tiny and only errors count. The notebooks run from the student build (``python -m helpers build student``:
outputs cleared, no reference solutions), installed in a fresh venv as a learner installs it (the ``student_copy``
fixture in conftest.py), on the server of this test run. One run of each notebook so proves both claims: the lesson
runs at tiny, and it runs from the student copy with every exercise unanswered ("not answered yet", no error).
Lessons whose measurements need bigger tables say so in one sentence and use `default`
(``lesson(..., min_scale="default")``); that path is exercised too. The `workshop` scale is left to
`make test-repeat`, which runs this same test with PDW_TEST_SCALE=workshop (loading it takes minutes). Each lesson's
database is dropped in the test's teardown, once its notebook has run (about 2 GB each at the workshop scale); a drop
is a checkpoint, so it stays out of the notebook's own run time.

The student copy itself is checked here too (what `make student` holds, and that no reference solution is in it):
one file, so that under `pytest -n 2 --dist loadfile` one worker builds and installs the copy once, not both.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("nbclient")

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


# ----------------------------------------------------------------- every notebook of the copy runs

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: The scale every notebook is run at: `tiny` in `make test`, `workshop` in `make test-repeat` (the fixture
#: student_copy loads it and sets PDW_SCALE for the copy's kernels).
SCALE = os.environ.get("PDW_TEST_SCALE", "tiny")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_without_error_at_scale(student_copy, path, request):
    assert (student_copy.root / "notebooks" / path.name).exists(), f"{path.name} is missing from the student copy"
    ran = {}

    def drop() -> None:  # in teardown: a failed drop is its own ERROR and never hides how the notebook ended
        said = student_copy.drop_lesson(path.stem)
        if ran.get("first"):  # the lesson call ran, so its database existed: a drop that finds none is a bug
            assert "dropped " in said, f"{path.stem}: nothing was dropped after the notebook ran ({said.strip()!r})"

    request.addfinalizer(drop)
    result = student_copy.run_notebook(path.name)
    ran["first"] = result["first"]
    if not result["ok"]:
        pytest.fail(f"{path.name} at {SCALE}, from the student copy: {result['error']}", pytrace=False)
    first = result["first"]
    assert f"'{SCALE}' data set" in first or "'default' data set" in first, first[:300]
    # (whether a lesson has exercises at all is its own tests' business: lesson 11 has none yet)
    for src, out in result["checks"]:
        assert "not answered yet" in out, f"{path.name}: an exercise check with no answer printed {out[:300]!r} ({src[:80]!r})"
