"""Where the workbook keeps its files and which defaults it uses (00_start_here)."""
from __future__ import annotations

import json
import os
from pathlib import Path

#: The project checkout (the package is installed in editable mode from it).
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # helpers/core/settings.py -> the checkout
#: git-ignored: the embedded server's data and local settings. PDW_HOME moves it to PDW_HOME/var (tests use a
#: throw-away one to run a private server).
VAR_DIR = Path(os.environ["PDW_HOME"]) / "var" if os.environ.get("PDW_HOME") else PROJECT_ROOT / "var"
PGDATA = VAR_DIR / "pgdata"                 # the embedded server's data directory
SETTINGS_FILE = VAR_DIR / "settings.json"

SCALES = ("tiny", "default", "workshop")
DEFAULT_SCALE = "default"
#: statement_timeout for every workbook connection: a runaway query stops instead of hanging the kernel.
DEFAULT_STATEMENT_TIMEOUT = "60s"
#: Port used when a GUI client asks for TCP (`python -m helpers server start --tcp`).
DEFAULT_TCP_PORT = 55432


def show_path(path: Path | str) -> str:
    """A path as a learner may see it in a stored output: relative to the checkout (``var/pgdata``), to PDW_HOME or
    to the temporary directory, never the absolute path of the machine that ran the notebook."""
    import tempfile

    path = Path(path)
    bases = [(PROJECT_ROOT, "")]
    if os.environ.get("PDW_HOME"):
        bases.insert(0, (Path(os.environ["PDW_HOME"]), "$PDW_HOME/"))
    bases.append((Path(tempfile.gettempdir()), "$TMPDIR/"))
    for base, prefix in bases:
        try:
            return prefix + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def statement_timeout() -> str:
    """The configured statement_timeout (PDW_STATEMENT_TIMEOUT, e.g. ``30s`` or ``2min``)."""
    return os.environ.get("PDW_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT)


def namespace() -> str:
    """PDW_NAMESPACE: keeps one run's lesson databases apart from another's (each test run sets ``test<letters>``)."""
    return os.environ.get("PDW_NAMESPACE", "")


def read_settings() -> dict:
    try:
        return json.loads(SETTINGS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_setting(key: str, value) -> None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    data = read_settings()
    data[key] = value
    SETTINGS_FILE.write_text(json.dumps(data, indent=2) + "\n")


def current_scale(explicit: str | None = None) -> str:
    """The data scale: an explicit argument, else PDW_SCALE, else the last `data load --scale`, else 'default'."""
    from helpers.core.errors import WorkbookError

    scale = explicit or os.environ.get("PDW_SCALE") or read_settings().get("scale") or DEFAULT_SCALE
    if scale not in SCALES:
        raise WorkbookError(f"Unknown data scale {scale!r}; choose one of {', '.join(SCALES)}.")
    return scale
