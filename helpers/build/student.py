"""The student build: ``dist/student/``, a copy of the course a learner installs, without the reference solutions.

- ``notebooks/``: every lesson with outputs, execution counts and stored widget state cleared;
- ``helpers/``: the package without ``helpers/lessons/solutions/`` (exercise checks never import it: the student
  tests run every notebook from this copy, and prove the checks answer "not answered yet");
- ``datasets/`` (the loader needs the shipped Chinook files), ``pyproject.toml``, ``LICENSE``, ``environment.yml``;
- a ``Makefile`` with the learner's targets and a ``README.md`` for learners.

Instructors who grade keep the full checkout; the tests and benchmarks stay out of the copy (they use the solutions).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers.build.common import DIST, ROOT, notebooks
from helpers.core.errors import WorkbookError

#: Paths under helpers/ left out of the copy.
EXCLUDED = ("lessons/solutions",)
TOP_FILES = ("pyproject.toml", "LICENSE", "environment.yml", ".env.example")

MAKEFILE = """\
# The learner's commands. Each one creates .venv and installs the workbook into it when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LAB_ARGS ?=

.PHONY: lab install server-start server-stop server-status reset

lab: $(STAMP)            ## open JupyterLab with the embedded PostgreSQL running (or DATABASE_URL's server)
\t$(PY) -m helpers lab $(LAB_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
\t@test -x $(PY) || $(PYTHON) -m venv $(VENV)
\t$(PY) -m pip install --quiet --disable-pip-version-check -e .
\t@touch $(STAMP)

server-start: $(STAMP)
\t$(PY) -m helpers server start
server-stop: $(STAMP)
\t$(PY) -m helpers server stop
server-status: $(STAMP)
\t$(PY) -m helpers server status
reset: $(STAMP)          ## drop every lesson database the workbook created (they are rebuilt on demand)
\t$(PY) -m helpers reset
"""


def clear_notebook(nb: dict) -> dict:
    """Outputs, execution counts, stored widget state and run metadata removed; sources untouched."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in ("execution", "collapsed", "scrolled"):
            cell.get("metadata", {}).pop(key, None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _ignore(src: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n in ("__pycache__", ".ipynb_checkpoints") or n.endswith((".pyc", ".egg-info"))}
    rel = Path(src).relative_to(ROOT / "helpers").as_posix()
    for excluded in EXCLUDED:
        parent, _, name = excluded.rpartition("/")
        if rel == parent and name in names:
            skip.add(name)
    return skip


def readme(lessons: list[str]) -> str:
    rows = "\n".join(f"| `{stem}` |" for stem in lessons)
    return f"""# Postgres Design Workbook: your copy

A hands-on course in PostgreSQL database design, in Jupyter notebooks, on a real PostgreSQL that the workbook
brings along (no server to install). Every performance claim is measured on your machine as you run the cells.

## Start

You need Python 3.11 or newer with its `venv` module (Debian/Ubuntu: `apt install python3-venv`) and `make`, on
Linux x86_64 (elsewhere set `DATABASE_URL` to a PostgreSQL 15+ server, see below).

```bash
make lab     # creates .venv, installs, starts the embedded PostgreSQL, opens JupyterLab
```

Open `00_start_here.ipynb` and run it top to bottom (Run → Run All Cells works too). The first run loads the
data (about half a minute). Then go through the lessons in order; each one stands alone and can be re-run.

| notebook |
| --- |
{rows}

## Exercises

Each lesson ends with exercises. An answer cell starts with `NO_ANSWER`; run it as it is and the check says
"not answered yet". Replace `NO_ANSWER` with your answer (or change the database, as the exercise asks) and run the
check again: it says **Right** or **Not yet**, with a hint naming the mistake. Any correct form is accepted.
This copy has no reference solutions: ask your instructor.

## Your own server: `DATABASE_URL`

`DATABASE_URL=postgresql://user:password@host:5432/dbname make lab` runs the same notebooks against any PostgreSQL
15 or newer (the role needs `CREATEDB`). The workbook only creates, changes and drops databases it created itself.

## When something is stuck

- `make reset` drops the lesson databases; the next run of a notebook's first cell creates its database again.
- `make server-status` / `make server-stop` show and stop the embedded PostgreSQL.
- Reading a lesson before running it: your instructor can give you the course as a web page (the book).
"""


def build(dest: Path | None = None) -> dict:
    """Write the student copy to ``dest`` (default ``dist/student``), replacing an earlier build there."""
    dest = Path(dest or DIST / "student")
    if dest.exists():
        if not (dest / ".pdw-student-build").exists():
            raise WorkbookError(f"{dest} exists and is not a student build: choose an empty or new directory.")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / ".pdw-student-build").write_text("written by python -m helpers build student; replaced on each build\n")
    shutil.copytree(ROOT / "helpers", dest / "helpers", ignore=_ignore)
    shutil.copytree(ROOT / "datasets", dest / "datasets", ignore=shutil.ignore_patterns("__pycache__"))
    for name in TOP_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    (dest / "Makefile").write_text(MAKEFILE)
    (dest / "notebooks").mkdir()
    stems = []
    for path in notebooks():
        nb = clear_notebook(json.loads(path.read_text()))
        (dest / "notebooks" / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        stems.append(path.stem)
    (dest / "README.md").write_text(readme(stems))
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    return {"path": str(dest), "notebooks": len(stems), "files": files, "bytes": size}
