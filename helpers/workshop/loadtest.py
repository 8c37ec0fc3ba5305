"""How many learners one server holds: N learners run the same notebook at the same time, each as its own role.

``python -m helpers workshop loadtest --learners N --notebook 03_indexing`` provisions a throw-away workshop of N
learners (prefix ``lt`` + random), starts N processes that each execute the notebook top to bottom in their own
kernel with the learner's ``DATABASE_URL`` (so each makes its own lesson database from the shared template, as in a
workshop), and tears the workshop down afterwards. It reports each learner's notebook time, p50/p95, the errors,
and the CPU the server spent on the learners' sessions (when the server runs on this machine). Every run is stored
as JSON in ``var/workshop/loadtest/``; the table and the plot (notebook time vs N) are redrawn from all stored runs
of that notebook, with the capacity rule: the learners per core at which the median notebook time doubles.

A benchmark, not part of ``make test`` (a run at N = 2 is a test).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from helpers import db
from helpers.core import settings
from helpers.core.errors import WorkbookError
from helpers.fmt import fmt_time

NOTEBOOKS = settings.PROJECT_ROOT / "notebooks"


def results_dir(out: str | None = None) -> Path:
    return Path(out) if out else settings.VAR_DIR / "workshop" / "loadtest"


def notebook_path(name: str) -> Path:
    path = NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.exists():
        raise WorkbookError(f"No notebook {path.name} in notebooks/.")
    return path


def min_scale_of(path: Path) -> str | None:
    """The scale a notebook asks for with ``lesson(..., min_scale=...)`` (it would load it otherwise)."""
    import re

    m = re.search(r'min_scale=\\?"(\w+)\\?"', path.read_text())
    return m.group(1) if m else None


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100) of a non-empty list."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# ---------------------------------------------------------------- one learner (a child process)

def run_one(path: str, result: str, timeout: float) -> int:
    """Execute one notebook in a fresh kernel, every cell even after a failed one (so the time is always the whole
    notebook's); write {"seconds", "error"} to ``result``, the error naming each failed cell. Runs in the child."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    errors = []
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False, allow_errors=True,
                       resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    except Exception as exc:  # noqa: BLE001  (a timeout or a dead kernel: that is a result too)
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        errors.append((lines[-1] if lines else type(exc).__name__)[:300])
    seconds = time.perf_counter() - started
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"code cell {i}: {out.get('ename')}: {str(out.get('evalue'))[:200]}")
            elif out.get("name") == "stderr" and "WorkbookError:" in out.get("text", ""):
                errors.append(f"code cell {i}: " + out["text"].strip().splitlines()[0][:200])
    Path(result).write_text(json.dumps({"seconds": seconds, "error": "; ".join(errors) or None}))
    return 0


# ---------------------------------------------------------------- server CPU

class BackendCPU(threading.Thread):
    """Samples the CPU time of the server processes that serve the given roles (local servers only)."""

    def __init__(self, roles: list[str], interval: float = 0.5):
        super().__init__(daemon=True)
        self.roles, self.interval = roles, interval
        self.seen: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        import psutil

        try:
            with db.connect(timeout="0") as admin:
                while not self.stop_event.is_set():
                    pids = [p for (p,) in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE usename = ANY(%s)", (self.roles,))]
                    for pid in pids:
                        try:
                            t = psutil.Process(pid).cpu_times()
                            self.seen[pid] = max(self.seen.get(pid, 0.0), t.user + t.system)
                        except (psutil.NoSuchProcess, psutil.AccessDenied):
                            pass
                    self.stop_event.wait(self.interval)
        except Exception as exc:  # noqa: BLE001
            self.error = str(exc).splitlines()[0]

    def stop(self) -> float:
        self.stop_event.set()
        self.join(timeout=10)
        return sum(self.seen.values())


def server_is_local(tgt: db.Target) -> bool:
    host = tgt.kwargs.get("host") or ""
    return tgt.kind == "embedded" or host.startswith("/") or host in ("127.0.0.1", "localhost", "::1", "")


# ---------------------------------------------------------------- the run

def run(learners: int, notebook: str = "03_indexing", *, scale: str | None = None, timeout: float = 900,
        out: str | None = None, progress: bool = True) -> dict:
    """Provision N learners, run the notebook N times at once (one kernel per learner), tear down; return the
    measurements (also stored as JSON)."""
    import psutil

    from helpers.workshop import provision as pv

    path = notebook_path(notebook)
    scale = scale or min_scale_of(path) or settings.current_scale(None)
    tgt = db.target()
    t0 = time.perf_counter()
    ws = pv.provision(learners, prefix=pv.new_prefix("lt"), scale=scale, progress=progress)
    provision_s = time.perf_counter() - t0
    with db.connect() as admin:
        version = db.server_version(admin)
    roles = [le.role for le in ws.learners]
    sampler = BackendCPU(roles) if server_is_local(tgt) else None
    results: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pdw-loadtest-") as tmp:
            procs = []
            if sampler:
                sampler.start()
            cpu0 = psutil.cpu_times()
            wall0 = time.perf_counter()
            for le in ws.learners:
                home = Path(tmp) / le.role
                home.mkdir()
                env = {**os.environ, **le.env(ws.prefix, scale), "PDW_HOME": str(home)}
                env.pop("PDW_NAMESPACE", None)  # a learner's lesson database, as in the workshop
                result = home / "result.json"
                log = open(home / "log.txt", "w")
                procs.append((le.role, result, log, subprocess.Popen(
                    [sys.executable, "-m", "helpers.workshop.loadtest", "--one", str(path), str(result),
                     str(timeout)], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)))
            for role, result, log, proc in procs:
                try:
                    proc.wait(timeout=timeout + 60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
                try:
                    res = json.loads(result.read_text())
                except (OSError, ValueError):
                    tail = (result.parent / "log.txt").read_text().strip().splitlines()[-1:] or ["no output"]
                    res = {"seconds": None, "error": f"the learner's process ended without a result ({tail[0]})"}
                results.append({"learner": role, **res})
                if progress:
                    print(f"  {role}: " + (fmt_time(res["seconds"]) if res["seconds"] else "-")
                          + (f"  ERROR {res['error']}" if res["error"] else ""), flush=True)
            wall = time.perf_counter() - wall0
            cpu1 = psutil.cpu_times()
            backend_cpu = sampler.stop() if sampler else None
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        t1 = time.perf_counter()
        pv.teardown(ws.prefix, quiet=True)
        teardown_s = time.perf_counter() - t1
    busy = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("user", "system", "nice", "irq", "softirq"))
    total = busy + (cpu1.idle - cpu0.idle) + (getattr(cpu1, "iowait", 0) - getattr(cpu0, "iowait", 0))
    times = [r["seconds"] for r in results if r["seconds"] is not None]
    summary = {
        "notebook": path.stem, "learners": learners, "prefix": ws.prefix, "scale": scale, "server": f"PostgreSQL {version}",
        "local_server": server_is_local(tgt), "cores": psutil.cpu_count(), "when": datetime.now(timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"), "provision_s": provision_s, "teardown_s": teardown_s, "wall_s": wall,
        "times": [r["seconds"] for r in results], "errors": [f"{r['learner']}: {r['error']}" for r in results
                                                           if r["error"]],
        "p50": statistics.median(times) if times else None, "p95": percentile(times, 95) if times else None,
        "server_cpu_s": backend_cpu, "machine_busy": busy / total if total else None,
    }
    store = results_dir(out)
    store.mkdir(parents=True, exist_ok=True)
    (store / f"{path.stem}_N{learners}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- table, plot, capacity rule

def stored(notebook: str, out: str | None = None) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in results_dir(out).glob(f"{Path(notebook).stem}_N*.json")]
    return sorted(runs, key=lambda r: r["learners"])


def capacity(runs: list[dict]) -> dict | None:
    """The N at which the median notebook time reaches twice the single learner's (interpolated between measured
    points, extrapolated along the last two when no measured N doubled it), and that N per core."""
    pts = [(r["learners"], r["p50"]) for r in runs if r.get("p50")]
    base = next((t for n, t in pts if n == 1), None)
    if base is None or len(pts) < 2:
        return None
    target = 2 * base
    for (n0, t0), (n1, t1) in zip(pts, pts[1:]):
        if t0 < target <= t1:
            n = n0 + (n1 - n0) * (target - t0) / (t1 - t0)
            return {"n": n, "per_core": n / runs[-1]["cores"], "extrapolated": False, "base": base}
    (n0, t0), (n1, t1) = pts[-2], pts[-1]
    if t1 <= t0:
        return None
    n = n1 + (n1 - n0) * (target - t1) / (t1 - t0)
    return {"n": n, "per_core": n / runs[-1]["cores"], "extrapolated": True, "base": base}


def table(runs: list[dict]) -> str:
    lines = [f"{'N':>3}  {'p50':>8}  {'p95':>8}  {'max':>8}  {'errors':>6}  {'server CPU':>10}  {'CPU/learner':>11}"
             f"  {'machine busy':>12}"]
    for r in runs:
        ok = [t for t in r["times"] if t]
        cpu = r.get("server_cpu_s")
        per = f"{cpu / r['learners']:.1f} s" if cpu is not None else "n/a"
        busy = f"{100 * r['machine_busy']:.0f} %" if r.get("machine_busy") is not None else "n/a"
        lines.append(
            f"{r['learners']:>3}  {fmt_time(r['p50']) if r['p50'] else '-':>8}  "
            f"{fmt_time(r['p95']) if r['p95'] else '-':>8}  {fmt_time(max(ok)) if ok else '-':>8}  "
            f"{len(r['errors']):>6}  {(f'{cpu:.1f} s' if cpu is not None else 'n/a'):>10}  "
            f"{per:>11}  {busy:>12}")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [r["learners"] for r in runs if r["p50"]]
    ax.plot(ns, [r["p50"] for r in runs if r["p50"]], "o-", label="p50")
    ax.plot(ns, [r["p95"] for r in runs if r["p50"]], "s--", label="p95")
    for r in runs:
        ax.scatter([r["learners"]] * len([t for t in r["times"] if t]), [t for t in r["times"] if t],
                   s=8, color="grey", alpha=0.5)
    cap = capacity(runs)
    if cap:
        ax.axhline(2 * cap["base"], color="red", lw=0.8, ls=":", label="2 × one learner")
    ax.set_xticks(ns)
    ax.set_xlabel("learners running the notebook at once (N)")
    ax.set_ylabel("notebook time per learner (s)")
    r0 = runs[-1]
    ax.set_title(f"{r0['notebook']} at {r0['scale']!r}, {r0['server']}, {r0['cores']} cores", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(notebook: str, out: str | None = None) -> str:
    runs = stored(notebook, out)
    if not runs:
        return f"No stored load-test runs of {notebook}."
    text = [f"Load test of {runs[-1]['notebook']} ({runs[-1]['scale']!r} data, {runs[-1]['server']}, "
            f"{runs[-1]['cores']} cores):", table(runs)]
    for r in runs:
        for e in r["errors"]:
            text.append(f"  N={r['learners']} error: {e}")
    cap = capacity(runs)
    if cap:
        text.append(f"Capacity rule: the median notebook time doubles (to {fmt_time(2 * cap['base'])}) at about "
                    f"{cap['n']:.1f} learners, i.e. {cap['per_core']:.1f} learners per core"
                    + (" (extrapolated beyond the largest N measured)" if cap["extrapolated"] else "") + ".")
    png = plot(runs, results_dir(out) / f"loadtest_{runs[-1]['notebook']}.png")
    text.append(f"Plot: {settings.show_path(png)}")
    return "\n".join(text)


def main(args) -> int:
    if not args.plot:
        print(f"Load test: {args.learners} learner(s) run {args.notebook} at the same time ...", flush=True)
        summary = run(args.learners, args.notebook, scale=args.scale, timeout=args.timeout, out=args.out)
        print(f"Provisioned in {fmt_time(summary['provision_s'])}, torn down in {fmt_time(summary['teardown_s'])}.")
    print(report(args.notebook, args.out))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        sys.exit(run_one(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    sys.exit("usage: python -m helpers workshop loadtest --learners N --notebook NAME")
