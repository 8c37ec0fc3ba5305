"""Repeatability check for instructors and maintainers (`make test-repeat`; not part of `make test`).

Against the current server (DATABASE_URL, or the embedded PostgreSQL 18):
  1. `make test` N times in a row (default 5);
  2. every notebook run twice in a row;
  3. all notebooks in reverse order;
  4. the whole suite in one pytest process (`make test` runs it in two workers, `-n 2 --dist loadfile`, so step 1
     covers the parallel run and this step the serial one);
  5. every notebook at the `workshop` scale (errors only), with each lesson's run time, for instructors
     (`--no-workshop` skips it: loading that scale takes minutes).
Prints one line per step with passes/runs and durations, then the same as a Markdown table, and exits non-zero if any
run failed. `--steps 2,3` runs only those steps.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBVAL = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-q"]


LOGS = ROOT / "var" / "test-repeat"


def _keep_log(prefix: str, text: str) -> Path:
    """Write a failed run's whole output under var/test-repeat/; returns its path relative to the checkout."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.write_text(text)
    return log.relative_to(ROOT)


def _run(cmd: list[str]) -> tuple[bool, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    summary = [line for line in lines if re.search(r"\d+ (passed|failed)", line)]
    tail = "; ".join(failed[:10] + summary[-1:]) or (lines or [""])[-1]
    if proc.returncode != 0:  # keep the whole output of a failed run: the summary line does not say why
        log = _keep_log("failed", " ".join(cmd) + "\n\n" + proc.stdout + "\n" + proc.stderr)
        tail += f" (full output: {log})"
    return proc.returncode == 0, time.perf_counter() - start, tail


ROWS: list[str] = []


def _report(name: str, results: list[tuple[bool, float, str]]) -> bool:
    ok = sum(r[0] for r in results)
    times = ", ".join(f"{r[1]:.0f} s" for r in results)
    print(f"{name}: {ok}/{len(results)} runs passed ({times})", flush=True)
    for passed, _, tail in results:
        if not passed:
            print(f"    failed: {tail}")
    total = sum(r[1] for r in results)
    ROWS.append(f"| {name} | {ok}/{len(results)} | {times if len(results) <= 5 else f'{total:.0f} s in all'} |")
    return ok == len(results)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--times", type=int, default=5, help="how many full `make test` runs (default 5)")
    p.add_argument("--no-workshop", action="store_true", help="skip step 5 (every notebook at the workshop scale)")
    p.add_argument("--steps", default="1,2,3,4,5", help="which steps to run, e.g. 2,3,4 (default: all)")
    args = p.parse_args()
    try:
        steps = {int(x) for x in args.steps.split(",") if x.strip()}
    except ValueError:
        steps = set()
    if not steps or not steps <= {1, 2, 3, 4, 5}:
        p.error(f"--steps {args.steps!r}: give step numbers 1-5, e.g. --steps 2,3")
    if args.no_workshop:
        steps.discard(5)
        if not steps:
            p.error("--no-workshop leaves no step to run")
    py = sys.executable
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    server = "DATABASE_URL " + os.environ["DATABASE_URL"].split("@")[-1] if os.environ.get("DATABASE_URL") \
        else "embedded PostgreSQL 18"
    print(f"Repeatability on {server}: {len(notebooks)} notebooks", flush=True)
    good = True
    if 1 in steps:
        good &= _report(f"make test x{args.times}", [_run(["make", "test"]) for _ in range(args.times)])
    if 2 in steps:
        twice = []
        for nb in notebooks:
            twice += [_run([py, "-m", "pytest", *NBVAL, nb]), _run([py, "-m", "pytest", *NBVAL, nb])]
        good &= _report("each notebook twice in a row", twice)
    if 3 in steps:
        good &= _report("all notebooks in reverse order", [_run([py, "-m", "pytest", *NBVAL, *reversed(notebooks)])])
    if 4 in steps:
        good &= _report("the whole suite in one process (no -n 2)",
                        [_run(["make", "test", "PYTEST_PARALLEL="])])
    if 5 in steps:
        good &= _workshop(py)
    print(f"\n| step on {server} | runs passed | durations |\n| --- | --- | --- |")
    print("\n".join(ROWS))
    return 0 if good else 1


def _workshop(py: str) -> bool:
    """Step 5: tests/test_scales.py at PDW_TEST_SCALE=workshop; prints each lesson's run time."""
    env = {**os.environ, "PDW_TEST_SCALE": "workshop"}
    start = time.perf_counter()
    proc = subprocess.run([py, "-m", "pytest", "tests/test_scales.py", "-q", "--durations=0"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    ok = proc.returncode == 0
    print(f"every notebook at the workshop scale: {'passed' if ok else 'FAILED'} ({seconds:.0f} s, the load included)")
    ROWS.append(f"| every notebook at the workshop scale | {'1/1' if ok else '0/1'} | {seconds:.0f} s |")
    times = re.findall(r"^([\d.]+)s call\s+\S+\[(\S+)\]$", proc.stdout, re.M)
    for secs, stem in sorted(times, key=lambda t: t[1]):
        print(f"    {stem:<24} {float(secs):6.0f} s")
    if not ok:
        failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print("    " + "\n    ".join(failed[:10] or proc.stdout.strip().splitlines()[-3:]))
        print(f"    full output: {_keep_log('failed-workshop', proc.stdout + chr(10) + proc.stderr)}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
