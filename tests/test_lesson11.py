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
    with private.spawn("t11_conn") as server:
        yield server


@pytest.fixture(scope="module")
def mem():
    with private.spawn("t11_mem") as server:
        yield server


def test_pool_beats_connect_per_request(srv):
    direct = L.bench("connect per request", srv, clients=4, per_client=20)
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
    with pgbouncer.start(srv, pool_size=2, extra_dbs={"one": 1}) as bouncer:
        direct = L.bench("connect per request", srv, clients=4, per_client=20)
        via = L.bench("PgBouncer (transaction mode)", srv, bouncer=bouncer, clients=4, per_client=50)
        assert via.errors == 0 and 1.5 < via.rate / direct.rate < 1000
        broken = L.transaction_mode_breaks(bouncer, "one")
        assert broken["B sees A's SET"] == "1234ms"
        assert broken["A locks 42"] is True and broken["B also gets lock 42"] is True
        assert "DuplicatePreparedStatement" in broken["prepare_threshold=0"]
        assert broken["prepare_threshold=None"] == "works"
        with bouncer.connect() as conn:   # the server side holds at most the pool's connections
            n = conn.execute("SELECT 1").fetchone()[0]
        assert n == 1
        proc = bouncer.proc
    assert proc.poll() is not None   # stop() ended it
    assert srv.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


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


def test_pool_sizing_shape(srv):
    df = L.pool_sizing(srv, sizes=(1, 4), clients=4, per_client=3)
    assert list(df.index) == [1, 4] and (df["errors"] == 0).all()
    assert {"requests/s", "p50 ms", "p95 ms", "query ms"} <= set(df.columns)
    fig = L.plot_pool_sizing(df, 2)
    assert len(fig.axes) == 2


def test_pool_settings_table():
    assert len(L.POOL_SETTINGS) == 6 and "connection_limit" in L.POOL_SETTINGS.iloc[0, 1]
    assert len(L.SETTINGS_FIRST) >= 6


def test_work_mem_spill_is_exact(mem):
    L.make_sort_table(mem, rows=50_000)
    small = L.sort_with(mem, "64kB", repeat=1)
    large = L.sort_with(mem, "128MB", repeat=1)
    assert small["external merge"] and small["sort method"] == "external merge"
    assert small["temp files"] >= 2 and small["temp bytes"] > 10**6
    assert not large["external merge"] and large["sort method"] == "quicksort"
    assert large["temp files"] == 0 and large["temp bytes"] == 0


def test_cache_cold_then_warm(mem):
    c = L.cache_cold_warm(mem, rows=20_000)
    assert c["pages"] > 100 and c["cached before"] == 0
    assert (c["cold read"], c["cold hit"]) == (c["pages"], 0)
    assert (c["warm hit"], c["warm read"]) == (c["pages"], 0)
    assert c["cached after cold"] == c["cached after warm"] == c["pages"]


def test_parallel_plan_follows_the_setting(mem):
    L.make_scan_table(mem)
    serial = L.parallel_scan(mem, 0, repeat=1)
    par = L.parallel_scan(mem, 2, repeat=1)
    assert not serial["gather"] and serial["workers planned"] == 0
    assert par["gather"] and par["workers planned"] == 2 and par["workers launched"] >= 1
