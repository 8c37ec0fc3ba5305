"""The book: ``dist/book/``, the executed course as a static HTML site (``make book``).

The notebooks are shown with their stored outputs (nothing is executed), through jupyter-book 1.x (Sphinx and
MyST-NB; the ``book`` extra), which builds offline. The source is staged in ``build/book-src/``:

- ``intro.md``: ``book/intro.md`` and the list of lessons, in course order (every notebook in ``notebooks/``);
- one page per notebook; a widget's output is replaced by what it showed (its text boxes, its output area: text
  and pictures), because the site carries no JavaScript widget manager and needs no internet;
- ``instructor_guide.md`` (:mod:`helpers.build.guide`).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers.build import guide
from helpers.build.common import DIST, ROOT, notebooks, outline
from helpers.core.errors import WorkbookError

BOOK_DIR = ROOT / "book"
STAGE = ROOT / "build" / "book-src"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_outputs(model_id: str, state: dict, seen: set[str]) -> list[dict]:
    """The outputs a widget showed, depth first: text boxes as text, output areas as their stored outputs."""
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    name, st = model.get("model_name", ""), model.get("state", {})
    out: list[dict] = []
    if name == "OutputModel":
        out.extend(st.get("outputs", []))
    elif name in ("HTMLModel", "HTMLMathModel") and st.get("value"):
        out.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": st["value"]}})
    elif name in ("TextareaModel", "TextModel", "LabelModel") and st.get("value"):
        label = f"{st['description']}\n" if st.get("description") else ""
        out.append({"output_type": "stream", "name": "stdout", "text": label + str(st["value"]).rstrip() + "\n"})
    elif name in ("FloatProgressModel", "IntProgressModel"):
        out.append({"output_type": "stream", "name": "stdout",
                    "text": f"{st.get('description', '')} {st.get('value', 0):g} of {st.get('max', 100):g}\n"})
    elif name == "ImageModel" and st.get("value"):
        pass  # not used by the course (charts are PNG outputs inside output areas)
    for child in st.get("children", []):
        out.extend(_widget_outputs(str(child).removeprefix("IPY_MODEL_"), state, seen))
    return out


def flatten_widgets(nb: dict) -> dict:
    """Replace each stored widget view by the outputs it showed, and drop the widget state."""
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        outputs = []
        for o in cell.get("outputs", []):
            view = o.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(o)
                continue
            shown = _widget_outputs(view.get("model_id", ""), state, set())
            if not shown:  # no stored state: its text form at least
                text = o["data"].get("text/plain", "(an interactive widget: run the notebook in JupyterLab)")
                shown = [{"output_type": "stream", "name": "stdout", "text": "".join(text) + "\n"}]
            outputs.extend(shown)
        cell["outputs"] = outputs
    return nb


def stage(dest: Path = STAGE) -> list[str]:
    """Write the jupyter-book source to ``dest``; returns the lesson stems in order."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    shutil.copy(BOOK_DIR / "_config.yml", dest / "_config.yml")
    stems, rows = [], []
    for path in notebooks():
        nb = flatten_widgets(json.loads(path.read_text()))
        (dest / "notebooks" / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        o = outline(path)
        title = re.sub(r"^\d\d\s*·\s*", "", o.title)
        rows.append(f"| {o.number} | [{title}](notebooks/{path.name}) |")
        stems.append(path.stem)
    intro = (BOOK_DIR / "intro.md").read_text().rstrip() + "\n\n| # | lesson |\n| --- | --- |\n" + "\n".join(rows)
    intro += ("\n\nFor instructors: [the instructor guide](instructor_guide.md), with each lesson's measured run "
              "time, a reading-time estimate, its key demonstrations and where learners get stuck.\n")
    (dest / "intro.md").write_text(intro)
    (dest / "instructor_guide.md").write_text(guide.render())
    toc = ["format: jb-book", "root: intro", "chapters:"]
    toc += [f"- file: notebooks/{stem}" for stem in stems] + ["- file: instructor_guide"]
    (dest / "_toc.yml").write_text("\n".join(toc) + "\n")
    return stems


EXTERNAL = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+""", re.I)


def external_resources(html_dir: Path) -> dict[str, list[str]]:
    """Scripts, stylesheets, fonts and images a page would fetch from another host (none expected)."""
    found = {}
    for page in sorted(html_dir.rglob("*.html")):
        hits = EXTERNAL.findall(page.read_text(errors="replace"))
        hits += re.findall(r"url\(\s*['\"]?(?:https?:)?//[^)'\"]+", page.read_text(errors="replace"))
        if hits:
            found[str(page.relative_to(html_dir))] = hits
    for css in sorted(html_dir.rglob("*.css")):
        hits = re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"])(?:https?:)?//[^)'\"]+", css.read_text(errors="replace"))
        if hits:
            found[str(css.relative_to(html_dir))] = hits
    return found


def _strip_external(html_dir: Path) -> None:
    """Drop the remaining tags that load from a CDN (none are needed to show text and images)."""
    for page in html_dir.rglob("*.html"):
        text = page.read_text()
        cleaned = re.sub(r"""<script\b[^>]*\bsrc\s*=\s*["'](?:https?:)?//[^"']+["'][^>]*>\s*</script>""", "", text)
        cleaned = re.sub(r"""<link\b[^>]*\bhref\s*=\s*["'](?:https?:)?//[^"']+["'][^>]*/?>""", "", cleaned)
        if cleaned != text:
            page.write_text(cleaned)


def build(dest: Path | None = None) -> dict:
    """Stage the source, run jupyter-book, copy the HTML to ``dest`` (default ``dist/book``)."""
    dest = Path(dest or DIST / "book")
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        raise WorkbookError("jupyter-book is not installed: `make book` installs the `book` extra "
                            "(.venv/bin/pip install -e '.[book]').")
    started = time.perf_counter()
    stems = stage()
    out = STAGE.parent / "book-out"
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run([str(jb), "build", str(STAGE), "--path-output", str(out), "--all"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if re.search(r"Error|error:", ln)]
        raise WorkbookError("jupyter-book failed: " + (errors or ["see " + str(out)])[-1].strip()[:300])
    html = out / "_build" / "html"
    _strip_external(html)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(html, dest, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    warnings = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "WARNING" in ln]
    pages = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.html")
                   if p.parent.name != "_static" and p.name not in ("search.html", "genindex.html"))
    return {"path": str(dest), "lessons": len(stems), "pages": len(pages), "seconds": round(time.perf_counter() - started, 1),
            "external": external_resources(dest), "warnings": warnings}
