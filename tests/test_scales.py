"""Every lesson runs top to bottom without an error at the smallest scale the README offers (`tiny`), from the
student copy.

Stored outputs are compared only at `default` (nbval); here each notebook is executed in a real kernel with
PDW_SCALE=tiny and only errors count. The notebooks run from the student build (``python -m helpers build student``:
outputs cleared, no reference solutions), installed in a fresh venv as a learner installs it (the ``student_copy``
fixture in conftest.py), on the server of this test run. One run of each notebook so proves both claims: the lesson
runs at tiny, and it runs from the student copy with every exercise unanswered ("not answered yet", no error).
Lessons whose measurements need bigger tables say so in one sentence and use `default`
(``lesson(..., min_scale="default")``); that path is exercised too. The `workshop` scale is left to
`make test-repeat`, which runs this same test with PDW_TEST_SCALE=workshop (loading it takes minutes).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: The scale every notebook is run at: `tiny` in `make test`, `workshop` in `make test-repeat` (the fixture
#: student_copy loads it and sets PDW_SCALE for the copy's kernels).
SCALE = os.environ.get("PDW_TEST_SCALE", "tiny")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_without_error_at_scale(student_copy, path):
    assert (student_copy.root / "notebooks" / path.name).exists(), f"{path.name} is missing from the student copy"
    result = student_copy.run_notebook(path.name)
    if not result["ok"]:
        pytest.fail(f"{path.name} at {SCALE}, from the student copy: {result['error']}", pytrace=False)
    first = result["first"]
    assert f"'{SCALE}' data set" in first or "'default' data set" in first, first[:300]
    # (whether a lesson has exercises at all is its own tests' business: lesson 11 has none yet)
    for src, out in result["checks"]:
        assert "not answered yet" in out, f"{path.name}: an exercise check with no answer printed {out[:300]!r} ({src[:80]!r})"
