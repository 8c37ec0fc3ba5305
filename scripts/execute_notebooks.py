"""Re-execute notebooks in place, top to bottom, so their stored outputs are what nbval compares.

    .venv/bin/python scripts/execute_notebooks.py                      # every notebook, in order
    .venv/bin/python scripts/execute_notebooks.py notebooks/03_*.ipynb # some

Run it on the embedded PostgreSQL 18 (unset DATABASE_URL) with the `default` scale loaded: the stored outputs are
compared on PostgreSQL 15 and 18 by CI, through the sanitizer in tests/nbval_sanitize.cfg. Prints each notebook's
run time; a cell that fails stops that notebook and leaves the file unchanged.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    if os.environ.get("DATABASE_URL"):
        print("Unset DATABASE_URL: stored outputs are made on the embedded server.", file=sys.stderr)
        return 2
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        try:
            NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=False,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as exc:  # noqa: BLE001  (report and go on with the next notebook)
            failed += 1
            print(f"FAILED {path.name}: {str(exc).strip().splitlines()[-1][:300]}", flush=True)
            continue
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
