"""Stored notebook outputs are the regression test, so they must be honest: executed top to bottom, in order,
with no error output, no SVG (it embeds a date), no sys.path edits, and each notebook opening with lesson()."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors(path):
    cells = _code_cells(path)
    counts = [c.get("execution_count") for c in cells]
    assert None not in counts, f"{path.name}: unexecuted cells"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not executed top to bottom in one run: {counts}"
    for c in cells:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: stored error output {out.get('ename')}"
            assert "image/svg+xml" not in out.get("data", {}), f"{path.name}: SVG figure (use PNG)"
            text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
            assert "Traceback" not in text, f"{path.name}: a traceback was printed"
            # lesson() shows a WorkbookError as one line instead of an error output; stored, it is still a failure
            assert "WorkbookError:" not in text, f"{path.name}: stores a WorkbookError: {text.strip()[:200]}"
        assert "sys.path" not in "".join(c["source"]), f"{path.name}: edits sys.path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_its_own_lesson_database(path):
    first = "".join(_code_cells(path)[0]["source"])
    assert f'lesson("{path.stem}")' in first, f"{path.name}: the first code cell must call lesson({path.stem!r})"
