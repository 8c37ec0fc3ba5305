"""The shipped Chinook files: where they are, their manifest, and reading them.

:mod:`helpers.data.generate` builds its world from these rows and :mod:`helpers.data.datasets` loads them; both
import this module, which imports neither.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

from helpers.core import settings
from helpers.core.errors import WorkbookError

DATA_DIR = settings.PROJECT_ROOT / "datasets"
RESTORE_HINT = "restore the shipped files with `git checkout -- datasets/` and load again"

#: Chinook tables in load order (parents before children).
CHINOOK_TABLES = ("artist", "album", "genre", "media_type", "playlist", "track", "playlist_track", "employee",
                  "customer", "invoice", "invoice_line")


# ---------------------------------------------------------------- the shipped files

def _manifest_path(data_dir: Path | None) -> Path:
    return (data_dir or DATA_DIR) / "manifest.json"


def read_manifest(data_dir: Path | None = None) -> dict:
    """The parsed ``manifest.json``; WorkbookError if it is missing or unreadable."""
    path = _manifest_path(data_dir)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbookError(f"{_show(path)} is missing; {RESTORE_HINT}.") from None
    except ValueError:
        raise WorkbookError(f"{_show(path)} is not valid JSON (corrupted); {RESTORE_HINT}.") from None


def manifest_digest(data_dir: Path | None = None) -> str:
    """SHA-256 of ``manifest.json``: it changes whenever any shipped file does."""
    path = _manifest_path(data_dir)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise WorkbookError(f"{_show(path)} is missing; {RESTORE_HINT}.") from None


def _show(path: Path) -> str:
    """``datasets/chinook/track.csv.gz`` rather than an absolute path, when it lives in the checkout."""
    try:
        return str(path.relative_to(DATA_DIR.parent))
    except ValueError:
        return str(path)


def verify_manifest(data_dir: Path | None = None) -> dict[str, int]:
    """Check every shipped file against the manifest (exists, SHA-256, row count); return rows per table.

    Introduced in 00_start_here (``python -m helpers data verify``). Raises WorkbookError naming the first
    file that is missing or does not match, and saying how to restore it.
    """
    base = data_dir or DATA_DIR
    manifest = read_manifest(data_dir)
    rows: dict[str, int] = {}
    for rel, info in manifest["files"].items():
        path = base / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise WorkbookError(f"{_show(path)} is missing; {RESTORE_HINT}.") from None
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise WorkbookError(f"{_show(path)} does not match its checksum in datasets/manifest.json "
                                f"(corrupted or edited); {RESTORE_HINT}.")
        n = _csv_gz_rows(data)
        if n != info["rows"]:  # only reachable if the manifest itself was edited
            raise WorkbookError(f"{_show(path)} has {n} rows but datasets/manifest.json says {info['rows']}; "
                                f"{RESTORE_HINT}.")
        rows[info["table"]] = n
    missing = set(CHINOOK_TABLES) - set(rows)
    if missing:
        raise WorkbookError(f"datasets/manifest.json lists no file for {', '.join(sorted(missing))}; {RESTORE_HINT}.")
    return rows


def _csv_gz_rows(data: bytes) -> int:
    text = gzip.decompress(data).decode("utf-8")
    return sum(1 for _ in csv.reader(io.StringIO(text))) - 1  # minus the header


def chinook_file(table: str, data_dir: Path | None = None) -> Path:
    return (data_dir or DATA_DIR) / "chinook" / f"{table}.csv.gz"


def read_chinook(table: str, data_dir: Path | None = None) -> list[dict[str, str | None]]:
    """The rows of one Chinook table as dicts of strings (None for NULL)."""
    path = chinook_file(table, data_dir)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except FileNotFoundError:
        raise WorkbookError(f"{_show(path)} is missing; {RESTORE_HINT}.") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return [{k: (v if v != "" else None) for k, v in zip(header, row)} for row in reader]
