"""Session hooks for `make test` (unit tests and notebooks alike)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def pytest_configure(config):
    # nbval resolves the sanitizer path from the working directory; make it independent of where pytest runs.
    sanitize = getattr(config.option, "nbval_sanitize_with", None)
    if sanitize and not os.path.isabs(sanitize):
        config.option.nbval_sanitize_with = str(ROOT / sanitize)


def pytest_sessionstart(session):
    """Hold the server for the whole run, and load the data once before any notebook needs it.

    Without this every notebook kernel would start and stop the embedded server, and the first notebook
    would show a loading progress bar that the stored outputs do not have.
    """
    from helpers import db

    db.target()  # starts (and holds) the embedded server when DATABASE_URL is unset
    if getattr(session.config.option, "nbval", False):
        db.ensure_template(None, progress=False)
