"""Every lesson runs top to bottom without an error at the smallest scale the README offers (`tiny`).

Stored outputs are compared only at `default` (nbval); here each notebook is executed in a real kernel with
PDW_SCALE=tiny and only errors count. Lessons whose measurements need bigger tables say so in one sentence and use
`default` (``lesson(..., min_scale="default")``); that path is exercised too. The `workshop` scale is left to
`make test-repeat`, which runs this same test with PDW_TEST_SCALE=workshop (loading it takes minutes).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: The scale every notebook is run at: `tiny` in `make test`, `workshop` in `make test-repeat`.
SCALE = os.environ.get("PDW_TEST_SCALE", "tiny")


@pytest.fixture(scope="module")
def scale_loaded():
    from helpers import db

    db.ensure_template(SCALE, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_without_error_at_scale(scale_loaded, path, monkeypatch):
    monkeypatch.setenv("PDW_SCALE", SCALE)  # inherited by the kernel
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        pytest.fail(f"{path.name} at {SCALE}: {lines[-1][:300]}", pytrace=False)
    first = "".join(nb.cells[[c.cell_type for c in nb.cells].index("code")].outputs[0].get("text", ""))
    assert f"'{SCALE}' data set" in first or "'default' data set" in first, first[:300]
    assert os.environ["PDW_SCALE"] == SCALE
