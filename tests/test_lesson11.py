"""Lesson 11 (scaling), part A: connection strategies, PgBouncer and what transaction mode breaks, pool sizing,
work_mem spills, shared_buffers cold vs warm, parallel workers; PgBouncer's absence and its cleanup."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from helpers import pgbouncer, private
from helpers.core.errors import WorkbookError
from helpers.lessons import scaling as L

pytestmark = pytest.mark.skipif(private.available() is not None, reason="no embedded PostgreSQL binaries")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need_bouncer() -> None:
    why = pgbouncer.require()   # PDW_REQUIRE_PGBOUNCER=1 (CI): missing is a failure, not a skip
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def srv():
    with private.spawn("t11_conn", L.SETUP_LOG) as server:
        yield server


@pytest.fixture(scope="module")
def mem():
    with private.spawn("t11_mem") as server:
        yield server


def test_pool_beats_connect_per_request(srv):
    since = L.log_offset(srv)
    direct = L.bench("connect per request", srv, clients=4, per_client=20)
    setup = L.connection_setup(srv, since)
    assert setup["connections"] >= 80 and 0 < setup["fork ms"] < setup["total ms"] < direct.p50 * 1000
    pooled = L.bench("psycopg_pool", srv, clients=4, per_client=100, pool_size=2)
    assert direct.errors == pooled.errors == 0 and direct.requests == 80 and pooled.requests == 400
    assert 1.5 < pooled.rate / direct.rate < 1000
    assert len(pooled.held) == 400 and pooled.p95 >= pooled.p50 > 0


def test_bad_strategy_and_missing_bouncer_are_one_sentence(srv):
    with pytest.raises(WorkbookError, match="Unknown strategy 'carrier pigeon'"):
        L.bench("carrier pigeon", srv)
    with pytest.raises(WorkbookError, match="Pass bouncer="):
        L.bench("PgBouncer (transaction mode)", srv)


def test_missing_pgbouncer_skips_or_fails_when_required(monkeypatch):
    monkeypatch.setattr(pgbouncer, "_exe", lambda: None)
    monkeypatch.delenv("PDW_REQUIRE_PGBOUNCER", raising=False)
    why = pgbouncer.missing()
    assert why and "apt-get install pgbouncer" in why and why.count(".") <= 2
    assert pgbouncer.require() == why
    monkeypatch.setenv("PDW_REQUIRE_PGBOUNCER", "1")
    with pytest.raises(WorkbookError, match="PDW_REQUIRE_PGBOUNCER=1"):
        pgbouncer.require()


def test_pgbouncer_transaction_mode(srv):
    _need_bouncer()
    assert pgbouncer.version() >= (1, 0)
    with pgbouncer.start(srv, pool_size=2, extra_dbs={"one": 1}, max_prepared_statements=0) as bouncer:
        ini = (bouncer.workdir / "pgbouncer.ini").read_text()
        assert ("max_prepared_statements = 0" in ini) == (pgbouncer.version() >= (1, 21))
        assert "options" not in ini   # a client's options are refused, not silently dropped
        # 3 rounds taking turns, each strategy's median round: one round under load measured PgBouncer at 1.2x
        runs = L.compare_connections(srv, bouncer, rounds=3, clients=4, per_client=15)
        d, p, v = (runs[s] for s in L.STRATEGIES)
        assert d.errors == p.errors == v.errors == 0 and 1.5 < v.rate / d.rate < 1000
        assert 1 <= L.server_backends(srv, settle_at=2 + 1) <= 2 + 1   # 4 clients, the server sees the pools only
        broken = L.transaction_mode_breaks(bouncer, "one")
        assert broken["B sees A's SET"] == "1234ms"
        assert broken["A locks 42"] is True and broken["B also gets lock 42"] is True
        assert "DuplicatePreparedStatement" in broken["prepare_threshold=0"]
        assert broken["prepare_threshold=None"] == "works"
        tracked = L.prepared_with_tracking(srv)
        assert tracked == (None if pgbouncer.version() < (1, 21) else "works")
        proc = bouncer.proc
    assert proc.poll() is not None   # stop() ended it
    assert srv.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


def test_pgbouncer_stop_is_prompt_with_a_client_connected(srv):
    """stop() sends SIGINT (safe shutdown): an idle client in transaction mode does not hold it up."""
    _need_bouncer()
    bouncer = pgbouncer.start(srv, pool_size=1)
    conn = bouncer.connect()
    conn.execute("SELECT 1")
    t = time.monotonic()
    bouncer.stop()
    assert bouncer.proc.poll() is not None and time.monotonic() - t < 4
    conn.close()


def test_pgbouncer_dies_with_a_killed_kernel(tmp_path):
    """kill -9 of the process that started a private server and PgBouncer leaves neither running."""
    _need_bouncer()
    script = textwrap.dedent("""
        import sys, time
        from helpers import pgbouncer, private
        srv = private.spawn("t11_orphan")
        b = pgbouncer.start(srv)
        print(b.proc.pid, srv.postmaster_pid(), flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        bouncer_pid, postmaster_pid = map(int, child.stdout.readline().split())
    finally:
        child.kill()
        child.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (psutil.pid_exists(bouncer_pid) or psutil.pid_exists(postmaster_pid)):
        time.sleep(0.1)
    for pid in (bouncer_pid, postmaster_pid):
        alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not alive, f"process {pid} outlived its kernel"


def test_pool_sizes_follow_the_cores():
    assert L.pool_sizes(2) == ((1, 2, 4, 8, 16), 16)
    assert L.pool_sizes(1) == ((1, 2, 4, 8), 8)
    assert L.pool_sizes(6) == ((1, 6, 12, 24, 48), 48)
    assert 1 <= L.cores() <= (os.cpu_count() or 1)


def test_pool_sizing_shape(srv):
    df = L.pool_sizing(srv, sizes=(1, 4), clients=4, per_client=3)
    assert list(df.index) == [1, 4] and (df["errors"] == 0).all()
    assert {"requests/s", "p50 ms", "p95 ms", "query ms", "CPU ms per query", "wait ms per query"} <= set(df.columns)
    assert (df["CPU ms per query"] > 0).all() and (df["wait ms per query"] >= 0).all()  # Linux: schedstat's both
    fig = L.plot_pool_sizing(df, 2)
    assert len(fig.axes) == 2 and len(fig.axes[1].get_legend().get_texts()) == 4  # requests/s, p95, query, wait


SPIN = "import sys, time\nprint('spinning', flush=True)\nend = time.perf_counter() + 6\nwhile time.perf_counter() < end: pass\n"


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="Linux's /proc/PID/schedstat")
def test_backend_sched_reads_cpu_and_run_queue_wait(srv):
    """schedstat's first two fields: on-CPU time and run-queue wait. A backend that runs while a busy loop runs on
    every core, and one more, must wait for a core, and its CPU time grows too."""
    with srv.connect() as conn:
        pid = conn.info.backend_pid
        cpu0, wait0 = L._backend_sched([pid])
        hogs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
                for _ in range((os.cpu_count() or 1) + 1)]
        try:
            for h in hogs:
                assert h.stdout.readline().strip() == "spinning"  # every busy loop has started
            conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        finally:
            for h in hogs:
                h.kill()
                h.wait(30)
        cpu1, wait1 = L._backend_sched([pid])
    assert cpu1 - cpu0 > 0.05 and wait1 - wait0 > 0.01, (cpu1 - cpu0, wait1 - wait0)
    assert L._backend_sched([2**22 + 7]) == (0.0, None)  # no such process: no figures, no error


def test_pool_settings_table():
    t = L.POOL_SETTINGS
    assert len(t) == 9 and "connection_limit" in t.iloc[0, 1]
    by_prisma = dict(zip(t.iloc[:, 1], t.iloc[:, 0]))
    assert "prepare_threshold" in by_prisma["pgbouncer=true"]   # pgbouncer=true turns prepared statements off
    assert "pgbouncer" not in t.set_index(t.columns[0]).loc["poolclass=NullPool"].iloc[0]
    assert len(L.SETTINGS_FIRST) >= 6


def test_work_mem_spill_is_exact(mem):
    L.make_sort_table(mem, rows=50_000)
    small = L.sort_with(mem, "64kB", repeat=1)
    large = L.sort_with(mem, "128MB", repeat=1)
    assert 'COLLATE "C"' in small["plan"]   # the timed sort compares bytes, not strcoll()
    libc = L.sort_with(mem, "128MB", repeat=1, collate=None)
    assert libc["sort method"] == "quicksort" and libc["temp files"] == 0
    assert small["external merge"] and small["sort method"] == "external merge"
    assert small["temp files"] >= 2 and small["temp bytes"] > 10**6
    assert not large["external merge"] and large["sort method"] == "quicksort"
    assert large["temp files"] == 0 and large["temp bytes"] == 0


def test_sort_rounds_keep_each_sorts_counters(mem):
    L.make_sort_table(mem, rows=20_000)
    r = L.sort_rounds(mem, {"spill": ("64kB", "C"), "memory": ("128MB", "C")}, rounds=3)
    assert r["spill"]["external merge"] and r["spill"]["temp files"] >= 2 and r["memory"]["temp files"] == 0
    assert r["spill"]["runs"] == r["memory"]["runs"] == 3 and r["spill"]["seconds"] > 0
    assert r["memory"]["sort method"] == "quicksort"


def test_cache_cold_then_warm(mem):
    c = L.cache_cold_warm(mem, rows=20_000)
    disk, os_warm, warm = (c[s] for s in L.COLD_STATES)
    assert c["pages"] > 100 and c["cached before"] == 0 and c["evicted"] == c["pages"]
    assert c["OS cache dropped bytes"] >= c["pages"] * 8192 or not hasattr(os, "posix_fadvise")
    assert (disk["read"], disk["hit"]) == (os_warm["read"], os_warm["hit"]) == (c["pages"], 0)
    assert (warm["hit"], warm["read"]) == (c["pages"], 0)
    assert disk["cached after"] == os_warm["cached after"] == warm["cached after"] == c["pages"]
    assert disk["read ms"] > 0 and warm["read ms"] == 0   # track_io_timing was on for the reads


def test_parallel_plan_follows_the_setting(mem):
    L.make_scan_table(mem)
    serial = L.parallel_scan(mem, 0, repeat=1)
    par = L.parallel_scan(mem, 2, repeat=1)
    assert not serial["gather"] and serial["workers planned"] == 0
    assert par["gather"] and par["workers planned"] == 2 and par["workers launched"] >= 1


def test_notebook_without_private_servers_says_so_and_runs(monkeypatch, capsys):
    """Issue #18: where the embedded binaries are missing, each measured cell prints the one-sentence reason and
    the rest of the lesson (the settings tables) still runs. Part A's code cells after lesson(...) are executed
    (up to the parallel-workers cell; part B is spliced in after it)."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    why = "The embedded PostgreSQL programs are not installed (simulated), so this section is skipped."
    monkeypatch.setattr(private, "available", lambda: why)
    monkeypatch.setattr(private, "spawn", lambda *a, **k: pytest.fail("spawn() called without binaries"))
    nb = json.load(open(os.path.join(ROOT, "notebooks", "11_scaling.ipynb")))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "lesson(" in cells[0]
    cells = cells[:next(i for i, c in enumerate(cells) if "parallel_scan(mem, 2)" in c) + 1]
    ns: dict = {}
    for src in cells[1:]:
        exec(compile(src, "cell", "exec"), ns)
        out = capsys.readouterr().out
        if "private" in src or "srv" in src or "mem" in src:
            assert why in out, src[:80]
