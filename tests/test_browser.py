"""What learners see: JupyterLab in a real (headless) Chromium, running a notebook and clicking its widget.

Needs Debian's `chromium` (browsers cannot be downloaded here, so Playwright drives the system one). Without it the
test is skipped, unless PDW_REQUIRE_BROWSER=1 (CI sets it), where a missing browser is a failure.
A screenshot is saved under artifacts/browser/ (git-ignored).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "00_start_here.ipynb"
CHROMIUM = os.environ.get("PDW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow


def _require_browser() -> str:
    if CHROMIUM and Path(CHROMIUM).exists():
        try:
            import playwright  # noqa: F401
        except ImportError:
            pass
        else:
            return CHROMIUM
    reason = "needs Debian's chromium package and the playwright Python package"
    if os.environ.get("PDW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (PDW_REQUIRE_BROWSER=1) but it {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    # Serve a copy: JupyterLab autosaves, and the stored outputs in notebooks/ are the regression test.
    served = tmp_path / "notebooks"
    served.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, served / NOTEBOOK)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--notebook-dir={served}", "--allow-root",
           "--LabApp.news_url=", "--ServerApp.open_browser=False"]
    settings = tmp_path / "lab-settings"
    # Render every cell (JupyterLab 4 otherwise hides cells outside the viewport), and no news pop-up.
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}')
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.2)
        else:
            pytest.fail("JupyterLab did not answer /api/status within 60 s")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_widget_renders_and_its_buttons_work_in_a_real_browser(jupyterlab):
    chromium = _require_browser()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    base, token = jupyterlab
    shots = ROOT / "artifacts" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}&reset")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            select = page.get_by_role("button", name="Select", exact=True)
            try:  # JupyterLab may ask which kernel to start: the notebook's own (Python 3)
                select.wait_for(timeout=15_000)
                select.click()
            except PlaywrightTimeout:
                pass
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()
            # Run the whole notebook from the menu, as a learner would.
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
            try:
                self_check(page, expect, shots)
            except Exception:
                page.screenshot(path=str(shots / "failure.png"), full_page=True)
                raise
        finally:
            browser.close()


def self_check(page, expect, shots: Path) -> None:
    """The rendered widget after "Run All Cells": results, pictures, and its two buttons clicked in the browser."""
    widget = page.locator(".jp-OutputArea-output .widget-vbox").filter(
        has=page.get_by_role("button", name="Measure before → after"))
    widget.wait_for()
    output = widget.locator(".widget-output")
    # The notebook measures (by calling the button) and then reverts in its next cell; wait for that.
    expect(output).to_contain_text("Reverted", timeout=180_000)
    # Now a learner's click in the browser: the rendered widget shows both measurements, the plan change and a chart.
    widget.get_by_role("button", name="Measure before → after").click()
    expect(widget.get_by_role("button", name="Revert the change")).to_be_enabled(timeout=120_000)
    expect(output).to_contain_text("before:")
    expect(output).to_contain_text("after:")
    expect(output).to_contain_text("speed-up")
    expect(output).to_contain_text("Index Only Scan using plays_track_id_idx")
    expect(output.locator("img")).to_have_count(1)
    widget.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "00_start_here_widget.png"), full_page=False)
    widget.get_by_role("button", name="Revert the change").click()
    expect(output).to_contain_text("Reverted", timeout=60_000)
    expect(widget.get_by_role("button", name="Revert the change")).to_be_disabled()
    widget.screenshot(path=str(shots / "00_start_here_widget_reverted.png"))
