"""The round-trip delay proxy of lesson 04 (helpers.latency): real delay, little overhead, loopback only, clean stop."""
from __future__ import annotations

import socket
import statistics
import threading
import time
from types import SimpleNamespace

import psycopg
import pytest

from helpers.latency import LatencyProxy, delayed_engine, upstream_address


@pytest.fixture(scope="module")
def scratch():
    """A lesson-like object on a fresh scratch database (what delayed_engine needs)."""
    from helpers import db

    with db.scratch_database("tlat") as conn:
        yield SimpleNamespace(target=db.target(), dbname=conn.info.dbname, timeout="60s", name="test_latency")


def _select1_times(engine, repeat: int = 12) -> list[float]:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            conn.execute(text("SELECT 1")).all()
            times.append(time.perf_counter() - t0)
    return times


def test_upstream_address():
    assert upstream_address({"host": "/var/run/pg"}) == (socket.AF_UNIX, "/var/run/pg/.s.PGSQL.5432")
    assert upstream_address({"host": "/tmp/x/", "port": "5433"}) == (socket.AF_UNIX, "/tmp/x/.s.PGSQL.5433")
    assert upstream_address({"host": "db.example.org", "port": 6000}) == (socket.AF_INET, ("db.example.org", 6000))
    assert upstream_address({}) == (socket.AF_INET, ("localhost", 5432))
    with pytest.raises(ValueError):
        upstream_address({"host": "a,b"})


def test_negative_delay_is_refused():
    with pytest.raises(ValueError):
        LatencyProxy((socket.AF_INET, ("127.0.0.1", 1)), delay_ms=-1)


def test_a_round_trip_through_a_5ms_proxy_takes_at_least_5ms(scratch):
    with delayed_engine(scratch, delay_ms=5) as engine:
        times = _select1_times(engine)
    assert min(times) >= 0.005, f"fastest SELECT 1 took {min(times) * 1000:.2f} ms"


def test_zero_delay_adds_little(scratch):
    with delayed_engine(scratch, delay_ms=0) as engine:
        through = min(_select1_times(engine, repeat=20))
    # Much less than the 5 ms of the test above: the proxy itself is not what makes that slow. The fastest run, as
    # in that test: the median measured 4.9 ms once, with two test suites sharing the machine's 2 cores.
    assert through < 0.0025, f"SELECT 1 through a 0 ms proxy took {through * 1000:.2f} ms at best"


def test_pipelined_messages_are_delayed_side_by_side(scratch):
    """Twenty statements sent in one pipeline wait about one delay, not twenty: the proxy behaves like a link."""
    kw = scratch.target.kwargs
    with LatencyProxy(upstream_address(kw), delay_ms=5) as proxy:
        with psycopg.connect(host="127.0.0.1", port=proxy.port, dbname=scratch.dbname, user=kw.get("user"),
                             password=kw.get("password"), sslmode="disable" if str(kw.get("host", "")).startswith("/")
                             else kw.get("sslmode", "prefer"), autocommit=True) as conn:
            conn.execute("SELECT 1")
            t0 = time.perf_counter()
            with conn.pipeline():
                cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
            values = [c.fetchone()[0] for c in cursors]
            elapsed = time.perf_counter() - t0
    assert values == list(range(20))
    assert 0.005 <= elapsed < 0.05, f"20 pipelined statements took {elapsed * 1000:.1f} ms"


def test_counts_bytes_and_messages(scratch):
    with delayed_engine(scratch, delay_ms=0) as engine:
        _select1_times(engine, repeat=5)
        proxy = engine.proxy
        assert proxy.bytes_up > 0 and proxy.bytes_down > 0
        assert proxy.messages_up >= 6


def test_listens_on_loopback_only_and_stops_cleanly(scratch):
    before = {t.ident for t in threading.enumerate()}
    with delayed_engine(scratch, delay_ms=1) as engine:
        proxy = engine.proxy
        assert proxy._listener.getsockname()[0] == "127.0.0.1"
        _select1_times(engine, repeat=2)
        assert proxy.connections == 1 and proxy.running
        port = proxy.port
    assert not proxy.running and proxy.connections == 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("latency-proxy")]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"proxy threads still running: {left}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_an_unreachable_server_gives_a_connection_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with LatencyProxy((socket.AF_INET, ("127.0.0.1", dead)), delay_ms=0) as proxy:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=proxy.port, user="x", dbname="x", connect_timeout=3,
                            sslmode="disable")


def test_delayed_connection(scratch):
    from helpers.latency import delayed_connection

    with delayed_connection(scratch, 5) as (conn, proxy):
        conn.execute("SELECT 1")
        before = proxy.messages_up
        t0 = time.perf_counter()
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
        assert time.perf_counter() - t0 >= 0.005
        assert proxy.messages_up == before + 1
    assert not proxy.running


# ------------------------------------------------------------------ process=True: the proxy in a process of its own

def test_process_proxy_delays_counts_and_stops(scratch):
    with delayed_engine(scratch, delay_ms=5, process=True) as engine:
        proxy = engine.proxy
        child = proxy._child
        assert child is not None and child.poll() is None
        times = _select1_times(engine, repeat=8)
        assert proxy.connections == 1 and proxy.running
        assert proxy.bytes_up > 0 and proxy.bytes_down > 0 and proxy.messages_up >= 9
        port = proxy.port
    assert min(times) >= 0.005, f"fastest SELECT 1 took {min(times) * 1000:.2f} ms"
    # Two-sided: in its own process the proxy does not wait for the client's interpreter lock.
    assert statistics.median(times) < 0.005 + 0.010, f"median {statistics.median(times) * 1000:.2f} ms at 5 ms"
    assert not proxy.running and child.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    proxy.stop()  # a second stop is harmless


def test_delayed_connection_in_a_process(scratch):
    from helpers.latency import delayed_connection

    with delayed_connection(scratch, 2, process=True) as (conn, proxy):
        conn.execute("SELECT 1")
        before = proxy.messages_up
        t0 = time.perf_counter()
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
        assert time.perf_counter() - t0 >= 0.002
        assert proxy.messages_up == before + 1
    assert not proxy.running


def test_process_proxy_does_not_outlive_a_killed_parent(tmp_path):
    """The proxy process stops when its stdin closes, which also happens when the kernel that started it dies."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import os, socket\nfrom helpers.latency import LatencyProxy\n"
            "p = LatencyProxy((socket.AF_INET, ('127.0.0.1', 9)), 1, process=True).start()\n"
            "print(p._child.pid, flush=True)\nos._exit(0)\n")
    root = Path(__file__).resolve().parent.parent
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                             timeout=60).stdout.strip())
    deadline = time.monotonic() + 10
    state = "R"
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            state = "gone"
        if state in ("Z", "X", "gone"):
            break
        time.sleep(0.05)
    assert state in ("Z", "X", "gone"), f"proxy process {pid} still running ({state})"
