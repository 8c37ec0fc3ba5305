"""Time each notebook's run, top to bottom, and record it in book/timings.json (the instructor guide reads it).

    .venv/bin/python scripts/time_notebooks.py                       # every notebook in notebooks/
    .venv/bin/python scripts/time_notebooks.py notebooks/08_*.ipynb  # add or refresh some (others are kept)

Each notebook is executed in memory (the file is not changed) at the scale that is loaded (`default` unless PDW_SCALE
says otherwise) on the server the workbook uses (the embedded one unless DATABASE_URL is set). The seconds recorded are
the machine's run time, not a learner's: the guide adds a reading-time estimate. A failed notebook is reported and left
out of the file.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "timings.json"


def main(argv: list[str]) -> int:
    from helpers import db
    from helpers.core import settings

    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    scale = settings.current_scale()
    db.ensure_template(scale, progress=False)  # loading the data is not part of any lesson's time
    holder = db.connect()  # keeps the embedded server up between notebooks, as a learner's session would
    server = "PostgreSQL " + db.server_version(holder)
    failed = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        try:
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as exc:  # noqa: BLE001  (report and go on with the next notebook)
            failed += 1
            print(f"FAILED {path.name}: {str(exc).strip().splitlines()[-1][:300]}", flush=True)
            continue
        seconds = round(time.perf_counter() - started, 1)
        data[path.stem] = {"seconds": seconds, "scale": scale, "server": server,
                           "cpus": os.cpu_count(), "python": platform.python_version(),
                           "measured": datetime.date.today().isoformat()}
        OUT.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
        print(f"{path.name}: {seconds:.0f} s", flush=True)
    holder.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
