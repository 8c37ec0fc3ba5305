"""Embedded server start times: cold (new data directory: initdb + start) and warm (restart), median of N.

    .venv/bin/python benchmarks/server_start.py [N]

Runs in throw-away data directories (PDW_HOME in a temp dir), so the workbook's own server is untouched.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CODE = "import time,sys; from helpers.core import server; t=time.perf_counter(); server.ensure_running(hold=False, pin=True); print(time.perf_counter()-t)"


def start(home: str) -> float:
    env = {**os.environ, "PDW_HOME": home}
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def stop(home: str) -> None:
    subprocess.run([sys.executable, "-m", "helpers", "server", "stop"], env={**os.environ, "PDW_HOME": home},
                   capture_output=True, check=True)


cold, warm = [], []
for _ in range(N):
    with tempfile.TemporaryDirectory() as home:
        cold.append(start(home))
        stop(home)
        warm.append(start(home))
        stop(home)
print(f"cold start (initdb + start): median {statistics.median(cold):.2f} s, min {min(cold):.2f}, max {max(cold):.2f} (n={N})")
print(f"warm start (existing data):  median {statistics.median(warm):.2f} s, min {min(warm):.2f}, max {max(warm):.2f} (n={N})")
