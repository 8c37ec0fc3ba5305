"""helpers.replicas and lesson 11 part B: a streaming standby, read-your-writes, routing, promotion, shards,
the two exercises (right answers and the classic wrong ones), and cleanup when the owner is killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from helpers import db as hdb
from helpers import private, replicas
from helpers.exercises import NO_ANSWER, get
from helpers.lessons import scaling_partb as L
from helpers.lessons import solutions
import helpers.lessons.solutions.scaling_partb as S  # noqa: F401  (registers the reference solutions)

pytestmark = pytest.mark.skipif(private.available() is not None, reason="no embedded PostgreSQL binaries")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pair():
    with replicas.pair("t11_primary", "t11_standby") as p:
        yield p


@pytest.fixture(scope="module")
def cluster():
    with replicas.shard_cluster(n_orders=3_000, n_customers=100) as c:
        yield c


@pytest.fixture(scope="module")
def les(tiny_template):
    with hdb.temporary_lesson("t11r_lesson") as lesson:
        yield lesson
    for srv in private.running():
        srv.stop()


def test_standby_streams_and_lag_is_measured(pair):
    rows = replicas.replication(pair.primary)
    assert [(r["application_name"], r["state"], r["sync_state"]) for r in rows] == [("t11_standby", "streaming", "async")]
    assert pair.standby.scalar("SELECT pg_is_in_recovery()") is True
    burst = replicas.write_burst(pair.primary, rows=20_000, name="t11_standby")
    assert burst["wal_bytes"] > 1_000_000 and burst["samples"] >= 1
    assert 0 <= burst["max_lag_bytes"] <= burst["wal_bytes"] * 2
    assert replicas.lag_bytes(pair.primary, "t11_standby") == 0 or replicas.wait_for_lsn(pair.standby, burst["lsn"]) >= 0


def test_paused_replay_misses_the_read_and_the_lsn_wait_sees_it(pair):
    r = L.stale_read(pair, "stale 1")
    assert (r["on_primary"], r["on_standby_at_once"], r["on_standby_after_wait"]) == (1, 0, 1)
    assert r["wal_received_while_paused"] is True  # received is not applied


def test_wait_for_lsn_times_out_in_one_sentence_while_paused(pair):
    with replicas.paused(pair.standby):
        lsn = replicas.write(pair.primary, "CREATE TABLE IF NOT EXISTS t_wait (x int)")
        with pytest.raises(replicas.WorkbookError, match="did not replay"):
            replicas.wait_for_lsn(pair.standby, lsn, timeout=0.3)


def test_remote_apply_is_seen_at_once_and_costs_commit_time(pair):
    r = L.commit_latency(pair, n=40)
    assert r["remote_apply"]["seen"] == r["remote_apply"]["n"] == 40
    assert replicas.replication(pair.primary)[0]["sync_state"] == "async"  # set back
    assert 0.3 <= r["paused"]["commit_s"] < 30  # the commit waited for the paused standby
    ratio = r["remote_apply"]["median_s"] / r["local"]["median_s"]
    assert 0.5 < ratio < 500, ratio  # about 2x on an idle machine; noise on a loaded one


def test_routing_session_sends_writes_to_the_primary_and_reads_to_the_replica(pair):
    steps = L.routing_demo(pair)["steps"]
    assert steps == [("add + commit (flush)", "primary", None), ("select after the commit", "replica", 0),
                     ("select in use_primary()", "primary", 1)]


def test_shards_prune_push_down_and_lose_global_uniqueness(cluster):
    assert sum(cluster.rows_per_shard().values()) == 3_000
    plan = cluster.explain("SELECT * FROM orders WHERE customer_id = 42")
    scans = [ln for ln in plan if "Foreign Scan on" in ln]
    assert len(scans) == 1 and replicas.shard_of(cluster, 42) in scans[0]
    assert any("Remote SQL:" in ln and "WHERE ((customer_id = 42))" in ln for ln in plan)
    agg = cluster.explain("SELECT customer_id, count(*) FROM orders GROUP BY customer_id")
    assert sum("GROUP BY" in ln and "Remote SQL" in ln for ln in agg) == 2
    u = L.global_unique_violation(cluster)
    assert u["unique_index_refused"] and u["copies_of_order_1"] == 2 and len(u["shards"]) == 2
    assert cluster.coordinator.scalar("SELECT count(*) FROM orders WHERE order_id = 1") == 1  # cleaned up


def test_exercise_customer_is_where_modulo_guesses_wrong(cluster):
    right = replicas.shard_of(cluster, L.EX_CUSTOMER)
    assert right != f"shard{L.EX_CUSTOMER % 2}"


def test_read_your_writes_exercise(les):
    ex = get("11.read_your_writes")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER).answered
    naive = ex.check(les, L.naive_read_after_write)
    assert not naive and "pg_last_wal_replay_lsn" in naive.message

    def receive_lsn(primary, standby, note):  # waits for WAL received, not applied
        with primary.connect() as p:
            p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
            lsn = replicas.current_lsn(p)
        with standby.connect() as s:
            while not s.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                time.sleep(0.01)
            row = s.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()
        return row[0] if row else None

    r = ex.check(les, receive_lsn)
    assert not r and "not yet applied" in r.message

    def fixed_sleep(primary, standby, note):
        with primary.connect() as p:
            p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
        time.sleep(0.6)
        with standby.connect() as s:
            row = s.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()
        return row[0] if row else None

    r = ex.check(les, fixed_sleep)
    assert not r and "fixed pause is a guess" in r.message

    def from_primary(primary, standby, note):
        with primary.connect() as p:
            p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
            return p.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()[0]

    assert ex.check(les, from_primary)
    assert ex.check(les, solutions.solve("11.read_your_writes", les.conn))
    broken = ex.check(les, lambda primary, standby, note: 1 / 0)
    assert not broken and "ZeroDivisionError" in broken.message
    assert "should be" in ex.check(les, "SELECT 1").message


def test_route_shard_exercise(les):
    ex = get("11.route_shard")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER).answered
    cluster = L.exercise_cluster(les)
    right = replicas.shard_of(cluster, L.EX_CUSTOMER)
    wrong_modulo = f"shard{L.EX_CUSTOMER % 2}"
    assert "hashes the key first" in ex.check(les, wrong_modulo).message
    assert "stores no rows" in ex.check(les, "coordinator").message
    assert "one of shard0, shard1" in ex.check(les, "shard7").message
    assert ex.check(les, right) and ex.check(les, cluster.shards[cluster.shard_names().index(right)])
    assert solutions.solve("11.route_shard", les.conn) == right


def _postmasters_under(root: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with __import__("contextlib").suppress(psutil.Error):
            if "postgres" in (proc.info["name"] or "") and str(root) in " ".join(proc.info["cmdline"] or []):
                found.append(proc.pid)
    return found


def test_killed_owner_of_a_pair_and_shards_leaves_no_postmaster():
    code = textwrap.dedent("""
        import time
        from helpers import replicas
        p = replicas.pair("t11k_primary", "t11k_standby")
        c = replicas.shard_cluster(n_orders=100, n_customers=10)
        roots = [p.primary.root, p.standby.root, c.coordinator.root, *[s.root for s in c.shards]]
        print(" ".join(map(str, roots)), flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    roots = [Path(x) for x in proc.stdout.readline().split()]
    assert len(roots) == 5 and all(r.exists() for r in roots)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and (any(r.exists() for r in roots) or any(_postmasters_under(r) for r in roots)):
        time.sleep(0.1)
    assert not any(r.exists() for r in roots), "a killed owner's private directories were left"
    assert not any(_postmasters_under(r) for r in roots), "a killed owner's postmaster was left"


def test_without_the_embedded_binaries_a_pair_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(private, "available", lambda: "The embedded PostgreSQL binaries are not installed.")
    with pytest.raises(replicas.WorkbookError, match=r"^The embedded PostgreSQL binaries are not installed\.$"):
        replicas.pair("t11_none")
    with pytest.raises(replicas.WorkbookError):
        replicas.shard_cluster(n_orders=10)
