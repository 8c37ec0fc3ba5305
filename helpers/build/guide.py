"""The instructor guide, one page of the book: per lesson the time it takes, what it demonstrates, where learners
get stuck.

- **Run time** is measured: ``scripts/time_notebooks.py`` executes each notebook and records its seconds in
  ``book/timings.json`` (re-run it for a new lesson; the others are kept).
- **Reading time** is an estimate, not a measurement: the words of prose at 200 words per minute plus the lines of
  code at 20 lines per minute (reading a line and running its cell).
- **Key demonstrations** are the notebook's numbered sections, minus the routine ones (setup, exercises, summary).
- **Where learners get stuck** is read from the exercises each notebook uses: their titles, and the mistakes their
  checks recognise (each ``CheckResult(False, ...)`` in the checker's source, which names the mistake and a hint).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import math
import re
import textwrap
from pathlib import Path

from helpers.build.common import ROOT, ROUTINE, notebooks, outline, source

TIMINGS = ROOT / "book" / "timings.json"
WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 20


def reading_minutes(prose_words: int, code_lines: int) -> int:
    return max(1, math.ceil(prose_words / WORDS_PER_MINUTE + code_lines / CODE_LINES_PER_MINUTE))


def _message(node: ast.AST) -> str | None:
    """The text of a message argument: a string, an f-string (values shown as …), or strings joined with +."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return (left or "…") + (right or "…") if left or right else None
    return None


def recognised_mistakes(checker) -> list[str]:
    """The 'not yet' messages written in a checker's source (not those about a missing setup)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(checker)))
    except (OSError, TypeError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "CheckResult" \
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is False \
                and len(node.args) > 1:
            text = _message(node.args[1])
            if text and not re.search(r"setup|no answer yet|should be .*not|could not run|^The answer should|^The query failed", text, re.I):
                text = re.sub(r"\s+", " ", text).strip()
                if text not in found:
                    found.append(text)
    return found


def exercises_of(path: Path) -> list:
    """The exercises a notebook uses (``get("id")`` in its code), from the registry of its lesson module."""
    from helpers import exercises
    from helpers.lessons import MODULES

    nb = json.loads(path.read_text())
    ids = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            ids += [i for i in re.findall(r"""\bget\(\s*["']([\w.]+)["']\s*\)""", source(cell)) if i not in ids]
    if path.stem in MODULES:
        importlib.import_module(f"helpers.lessons.{MODULES[path.stem]}")
    known = {e.id: e for e in exercises.all_exercises()}
    return [known[i] for i in ids if i in known]


def _short(text: str, limit: int = 260) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def render() -> str:
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    paths = notebooks()
    lines = [
        "# Instructor guide", "",
        "Per lesson: how long it takes, what it demonstrates, and where learners get stuck. Generated from the "
        "notebooks, the exercises' checks and `book/timings.json` by `make book`.", "",
        "- **Run time** is measured: the seconds the notebook took to run top to bottom in one kernel "
        "(`scripts/time_notebooks.py`, which records the scale, the server and the machine's CPU count). "
        "A learner's machine differs; the first lesson of a session also loads the data (about half a minute).",
        f"- **Reading time** is an *estimate*, not a measurement: the prose at {WORDS_PER_MINUTE} words per minute "
        f"plus the code at {CODE_LINES_PER_MINUTE} lines per minute. Exercises come on top; plan at least as long "
        "again for them.",
        "- **Where learners get stuck** lists each exercise and the mistakes its check recognises, in the words "
        "the check uses (… stands for a value filled in at run time).", "",
        "| # | lesson | run time (measured) | reading (estimate) | exercises |",
        "| --- | --- | --- | --- | --- |",
    ]
    details = []
    for path in paths:
        o = outline(path)
        t = timings.get(path.stem)
        run = (f"{t['seconds']:.0f} s ({t['scale']}, {t['server']}, {t['cpus']} CPUs)" if t
               else "not measured yet: run `scripts/time_notebooks.py`")
        read = reading_minutes(o.prose_words, o.code_lines)
        exs = exercises_of(path)
        short = re.sub(r"^\d\d\s*·\s*", "", o.title)
        lines.append(f"| {o.number} | [{short}](notebooks/{path.name}) | {run} | ~{read} min | {len(exs)} |")
        demos = [re.sub(r"^\d+\.\s*", "", s) for s in o.sections if not ROUTINE.match(s)]
        block = [f"## {o.title}", "",
                 f"Run time: {run}. Reading: about {read} min (estimate: {o.prose_words} words of prose, "
                 f"{o.code_lines} lines of code).", "", "**Key demonstrations**", ""]
        block += [f"- {d}" for d in demos] or ["- (no numbered sections)"]
        block += ["", "**Where learners get stuck**", ""]
        if not exs:
            block.append("- This lesson has no checked exercises.")
        for ex in exs:
            block.append(f"- `{ex.id}`: {_short(ex.title)}")
            for m in recognised_mistakes(ex.checker)[:6]:
                block.append(f"  - {_short(m)}")
        details += block + [""]
    total = sum(timings[p.stem]["seconds"] for p in paths if p.stem in timings)
    lines += ["", f"Measured run time of the {sum(p.stem in timings for p in paths)} timed lessons together: "
              f"{total / 60:.1f} min.", ""]
    return "\n".join(lines + details)
