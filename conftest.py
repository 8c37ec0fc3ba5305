"""Session hooks for `make test` (unit tests and notebooks alike)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _letters(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
        if n == 0:
            return out


def pytest_configure(config):
    # Lesson databases of a test run get their own names (pdw_<role>_test<run>_...), inherited by nbval's kernels
    # and xdist workers, so `make test` never drops the lesson database of a notebook a learner has open, and two
    # test runs against one server do not drop each other's. Letters only: the sanitizer keys on the lesson number.
    os.environ.setdefault("PDW_NAMESPACE", "test" + _letters(os.getpid() * 1000 + secrets.randbelow(1000)))
    # Stored outputs are made at the default scale with the default timeout: a learner's own choices
    # (`data load --scale tiny`, PDW_STATEMENT_TIMEOUT) must not change what the test run compares.
    os.environ["PDW_SCALE"] = "default"
    os.environ.pop("PDW_STATEMENT_TIMEOUT", None)
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


def pytest_sessionfinish(session, exitstatus):
    """Drop the lesson databases this test run created (its namespace only; never a learner's)."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller cleans up once all are done
        return
    from helpers import db
    from helpers.core import settings

    if not settings.namespace():
        return
    with db.connect() as admin:
        prefix = db.db_name(admin.info.user, "")
        for name, mark in db.own_databases():
            if name.startswith(prefix) and mark.get("kind") in ("lesson", "scratch"):
                db.drop_own(admin, name)
