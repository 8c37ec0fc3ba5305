"""What the builds share: the notebooks in course order, their titles and sections."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from helpers.core import settings

ROOT = settings.PROJECT_ROOT
NOTEBOOKS_DIR = ROOT / "notebooks"
DIST = ROOT / "dist"
#: Sections every lesson has; the guide lists the others as the lesson's demonstrations.
ROUTINE = re.compile(r"^(\d+\.\s*)?(exercises?|summary|what you will (learn|need).*|before you start|"
                     r"where next.*|next steps?|clean(ing)? ?up.*|reset.*|\d*\.?\s*your (own )?lesson database.*)$", re.I)


def notebooks(directory: Path | None = None) -> list[Path]:
    """The lessons, in course order (``NN_topic.ipynb``)."""
    return sorted((directory or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


@dataclass
class Outline:
    stem: str
    number: str
    title: str
    sections: list[str]
    prose_words: int
    code_lines: int


def outline(path: Path) -> Outline:
    """Title (the first ``# `` heading), ``## `` sections and the amount of prose and code of a notebook."""
    import json

    nb = json.loads(path.read_text())
    title, sections, words, lines = None, [], 0, 0
    for cell in nb["cells"]:
        text = source(cell)
        if cell["cell_type"] == "markdown":
            words += len(re.findall(r"[A-Za-z0-9][\w'’-]*", re.sub(r"`[^`]*`|\([^)]*://[^)]*\)", " ", text)))
            for line in text.splitlines():
                if line.startswith("# ") and title is None:
                    title = line[2:].strip()
                elif line.startswith("## "):
                    sections.append(line[3:].strip())
        elif cell["cell_type"] == "code":
            lines += sum(1 for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))
    stem = path.stem
    return Outline(stem, stem[:2], title or stem, sections, words, lines)
