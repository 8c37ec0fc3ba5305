"""The book (`make book`): the executed course as a static site, checked in a real (headless) Chromium.

Built from the stored outputs with jupyter-book 1.x (the `book` extra, also in the `test` extra). In the browser:
every page loads, every internal link resolves (file and anchor), every image renders (naturalWidth > 0), each
lesson page links to the previous and next one, and the index lists the 14 lessons of the curriculum (00-13). No page
may load anything from another host. A screenshot of the index is saved as dist/book-index.png.

Like tests/test_browser.py it needs Debian's `chromium` and playwright: without them the browser test is skipped,
unless PDW_REQUIRE_BROWSER=1 (CI sets it), where a missing browser (or jupyter-book) is a failure. The book does not
depend on the server, so with DATABASE_URL set (CI's PostgreSQL 15 run) it is skipped: ~1 min of CI saved.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PDW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
#: The curriculum's lessons: the index must list each, by number.
CURRICULUM = [f"{n:02d}" for n in range(14)]

pytestmark = pytest.mark.slow


def _required(reason: str):
    if os.environ.get("PDW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"book test required (PDW_REQUIRE_BROWSER=1) but it {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def book():
    if os.environ.get("DATABASE_URL") and os.environ.get("PDW_BOOK_EVERY_SERVER") != "1":
        pytest.skip("the book is built from stored outputs and needs no server: CI tests it in the run on the "
                    "embedded server (PDW_BOOK_EVERY_SERVER=1 runs it here too)")
    if not (Path(sys.executable).parent / "jupyter-book").exists():
        _required("needs jupyter-book (pip install -e '.[book]')")
    from helpers.build import book as builder

    base = Path(tempfile.mkdtemp(prefix="pdw-book-"))  # not in pytest's basetemp, which other runs may remove
    started = time.perf_counter()
    result = builder.build(base / "book")
    result["wall"] = time.perf_counter() - started
    yield result
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def served(book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=book["path"])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()


def pages(book) -> list[Path]:
    root = Path(book["path"])
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)


def test_the_book_has_a_page_per_notebook_and_needs_no_other_host(book):
    root = Path(book["path"])
    stems = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    for stem in stems:
        assert (root / "notebooks" / f"{stem}.html").exists(), stem
    assert (root / "index.html").exists() and (root / "instructor_guide.html").exists()
    assert book["external"] == {}, book["external"]
    for page in pages(book):  # nothing left that a page would fetch from the internet, in any form
        html = page.read_text()
        assert not re.search(r"""(?:src|href)=["'](?:https?:)?//(?!127\.0\.0\.1)[^"']+\.(?:js|css|woff2?|ttf|png|svg)""",
                             html), page.name
    print(f"book: {book['pages']} pages ({book['lessons']} lessons), built in {book['wall']:.1f} s")


def test_stored_outputs_and_flattened_widgets_are_on_the_pages(book):
    root = Path(book["path"])
    html = (root / "notebooks" / "00_start_here.html").read_text()
    assert "<img" in html  # the ER diagram and the widget's chart
    assert "widget-view" not in html and "require.js" not in html
    guide = (root / "instructor_guide.html").read_text()
    assert "run time (measured)" in guide and "estimate" in guide and "Where learners get stuck" in guide


def test_every_page_link_and_image_in_a_real_browser(book, served):
    if not (CHROMIUM and Path(CHROMIUM).exists()):
        _required("needs Debian's chromium package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _required("needs the playwright Python package")
    root = Path(book["path"])
    urls = {served + str(p.relative_to(root)): p for p in pages(book)}
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
    problems, links, outside = [], {}, set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # No request may leave 127.0.0.1: count (and refuse) any that tries.
            page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"),
                       lambda route: (outside.add(route.request.url), route.abort()))
            for url in urls:
                response = page.goto(url, wait_until="load")
                if not response or not response.ok:
                    problems.append(f"{url}: HTTP {response.status if response else 'no response'}")
                    continue
                redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', urls[url].read_text())
                if redirect:  # jupyter-book's index.html: it must lead to a page that exists
                    page.wait_for_url(urljoin(url, redirect.group(1)))
                    page.wait_for_load_state("load")
                    links.setdefault(page.url, url)
                    continue
                broken = page.evaluate("""async () => {
                    const imgs = [...document.images];
                    for (const img of imgs) { img.loading = 'eager'; try { await img.decode(); } catch (e) {} }
                    return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
                }""")
                problems += [f"{url}: image does not render: {src}" for src in broken]
                for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
                    if urlparse(href).netloc == urlparse(served).netloc:
                        links.setdefault(href, url)
                if "/notebooks/" in url:
                    nav = page.eval_on_selector_all("a.left-prev, a.right-next", "as => as.length")
                    if nav < 2:
                        problems.append(f"{url}: no previous/next navigation")
            # Every internal link: its page answers, and its anchor exists there.
            ids = {}
            for href, source in sorted(links.items()):
                target, frag = urldefrag(href)
                if target not in ids:
                    response = page.goto(target)
                    ids[target] = set(page.eval_on_selector_all("[id]", "es => es.map(e => e.id)")) \
                        if response and response.ok else None
                if ids[target] is None:
                    problems.append(f"{source}: link to {href} does not resolve")
                elif frag and frag not in ids[target]:
                    problems.append(f"{source}: anchor #{frag} missing on {target}")
            # The index follows the curriculum, and a picture of it.
            page.goto(served + "index.html")  # jupyter-book's index.html redirects to the root page, intro.html
            page.wait_for_url(re.compile(r"intro\.html$"))
            page.wait_for_load_state("load")
            listed = page.eval_on_selector_all(
                "main a[href*='notebooks/']", "as => as.map(a => [a.getAttribute('href'), a.textContent])")
            numbers = sorted({m.group(1) for href, _ in listed if (m := re.search(r"notebooks/(\d\d)_", href))})
            (ROOT / "dist").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "dist" / "book-index.png"), full_page=True)
        finally:
            browser.close()
    assert not outside, f"pages tried to load from other hosts: {sorted(outside)[:5]}"
    assert not problems, "\n".join(problems[:30])
    assert len(links) > 20
    missing = [n for n in CURRICULUM if n not in numbers]
    assert not missing, f"the index does not list lessons {missing} of the curriculum (00-13); it lists {numbers}"
