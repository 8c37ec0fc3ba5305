"""Every lesson's exercises are registered, numerous enough, and have a tested reference solution.

(Each lesson's own test file proves its checks fail on the starting state and pass after the solution;
this file makes sure no exercise is left without a solution and no notebook falls short of the minimum.)
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import helpers.lessons
import helpers.lessons.solutions
from helpers.exercises import all_exercises
from helpers.lessons.solutions import has_solution

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MINIMUM = {"03": 3}  # the indexing lesson asks for three; others two; 00 only demonstrates the format


def _import_lessons() -> None:
    for package in (helpers.lessons, helpers.lessons.solutions):
        for mod in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{mod.name}")


def test_every_exercise_has_a_reference_solution():
    _import_lessons()
    missing = [ex.id for ex in all_exercises() if not has_solution(ex.id)]
    assert not missing, f"exercises without a reference solution: {missing}"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00")], ids=lambda p: p.name)
def test_each_lesson_has_enough_exercises_and_shows_them(path):
    _import_lessons()
    number = path.name[:2]
    ids = [ex.id for ex in all_exercises() if ex.id.startswith(f"{number}.")]
    assert len(ids) >= MINIMUM.get(number, 2), f"{path.name}: only {ids}"
    assert all(ex.lesson == path.stem for ex in all_exercises() if ex.id in ids)
    source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    shown = [i for i in ids if i in source]
    assert len(shown) >= MINIMUM.get(number, 2), f"{path.name} shows only {shown} of {ids}"
