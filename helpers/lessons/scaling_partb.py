"""Lesson 11, part B (scaling out): read replicas, read-your-writes, routing, promotion, sharding.

Written to be appended to :mod:`helpers.lessons.scaling`. Everything runs on private servers
(:mod:`helpers.replicas`), whatever server the lesson database is on.

* :func:`stale_read`, :func:`commit_latency`, :func:`routing_demo`, :func:`promotion_demo`,
  :func:`global_unique_violation`: the notebook's measured steps.
* Exercises ``11.read_your_writes`` and ``11.route_shard`` (solutions in
  :mod:`helpers.lessons.solutions.scaling_partb`).
"""
from __future__ import annotations

import inspect
import random
import statistics
import threading
import time
from typing import Any, Callable

import psycopg
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpers import private, replicas
from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.timing import as_connection

# Merge-friendly: appended to helpers/lessons/scaling.py this extends that module's __all__ (when appending, drop
# the __future__ line above, which scaling.py already has, and move these imports to its top).
__all__ = [*globals().get("__all__", []), "stale_read", "commit_latency", "routing_demo", "promotion_demo", "global_unique_violation",
           "exercise_pair", "exercise_cluster", "naive_read_after_write", "EX_CUSTOMERS"]


# ---------------------------------------------------------------- read-your-writes

def stale_read(pair: replicas.Pair, note: str = "order 1") -> dict:
    """Commit a row on the primary while the standby's replay is paused, wait until the standby has *received*
    that WAL, read the row there (missed), then resume and read again after waiting for the commit's LSN (seen).
    Deterministic: the pause, not timing, makes the first read stale. The note gets a unique suffix, so the cell
    can run again on the same pair."""
    pair.primary.sql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
    replicas.wait_for_lsn(pair.standby, replicas.current_lsn(pair.primary))  # the table exists on the standby
    note = f"{note} {time.time_ns()}"
    with replicas.paused(pair.standby):
        lsn = replicas.write(pair.primary, "INSERT INTO notes (body) VALUES (%s)", (note,))
        on_primary = pair.primary.scalar("SELECT count(*) FROM notes WHERE body = %s", (note,))
        with pair.standby.connect() as s:  # the WAL arrives asynchronously to the commit: poll for it
            replicas._poll(lambda: s.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0],
                           10, "The standby did not receive the commit's WAL within 10 s.")
            received = True
            on_standby = s.execute("SELECT count(*) FROM notes WHERE body = %s", (note,)).fetchone()[0]
    waited = replicas.wait_for_lsn(pair.standby, lsn)
    after = pair.standby.scalar("SELECT count(*) FROM notes WHERE body = %s", (note,))
    return {"commit_lsn": lsn, "on_primary": on_primary, "on_standby_at_once": on_standby,
            "wal_received_while_paused": received, "on_standby_after_wait": after, "wait_s": waited}


def commit_latency(pair: replicas.Pair, n: int = 60) -> dict:
    """Median COMMIT time of ``n`` one-row transactions, each ``SET LOCAL synchronous_commit`` to local (the standby
    is not waited for) or remote_apply (the standby named in ``synchronous_standby_names`` has applied it: only the
    transactions that ask for it wait), and whether the standby saw each row right after the commit returned."""
    pair.primary.sql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
    out: dict = {}
    replicas.set_sync(pair.primary, pair.standby.name)
    try:
        with pair.primary.connect() as p, pair.standby.connect() as s:
            def one(mode: str, body: str) -> float:
                """BEGIN; SET LOCAL ...; INSERT; COMMIT (the setting ends with it): the COMMIT's seconds."""
                p.execute("BEGIN")
                p.execute(f"SET LOCAL synchronous_commit = {mode}")
                p.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
                t0 = time.perf_counter()
                p.execute("COMMIT")
                return time.perf_counter() - t0

            for mode in ("local", "remote_apply"):  # warm-up, not counted
                for _ in range(10):
                    one(mode, "warm-up")
            for i in range(n):  # alternated transaction by transaction: load hits both alike
                for mode in (("local", "remote_apply") if i % 2 else ("remote_apply", "local")):
                    times, seen = out.setdefault(mode, ([], []))
                    body = f"{mode} {len(times)} {time.time_ns()}"
                    times.append(one(mode, body))
                    seen.append(s.execute("SELECT count(*) FROM notes WHERE body = %s", (body,)).fetchone()[0])
            # the mechanism, shown without a stopwatch race: with the standby's replay paused for `pause` seconds,
            # a remote_apply commit cannot return before the standby resumes and applies it
            pause = 0.3
            replicas.pause_replay(pair.standby)
            timer = threading.Timer(pause, lambda: replicas.resume_replay(pair.standby))
            p.execute("BEGIN")
            p.execute("SET LOCAL synchronous_commit = remote_apply")
            p.execute("INSERT INTO notes (body) VALUES ('while paused')")
            t0 = time.perf_counter()
            timer.start()
            p.execute("COMMIT")
            blocked = time.perf_counter() - t0
            timer.join()
    finally:
        replicas.resume_replay(pair.standby)
        replicas.set_sync(pair.primary, None)
    res = {mode: {"median_s": statistics.median(t), "q1_s": statistics.quantiles(t, n=4)[0],
                  "q3_s": statistics.quantiles(t, n=4)[2], "seen": sum(x == 1 for x in v), "n": len(t)}
           for mode, (t, v) in out.items()}
    res["paused"] = {"pause_s": pause, "commit_s": blocked}
    return res


def naive_read_after_write(primary: private.PrivateServer, standby: private.PrivateServer, note: str) -> Any:
    """The buggy pattern: commit on the primary, read the row back from the standby at once."""
    with primary.connect() as p:
        p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
    with standby.connect() as s:
        row = s.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- routing in SQLAlchemy

def routing_demo(pair: replicas.Pair) -> dict:
    """An ORM model on the pair, one RoutingSession: which engine each step used, and what the reads saw."""
    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "routed_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(100))

    primary_engine, replica_engine, Session = replicas.router(pair.primary.url, pair.standby.url)
    Base.metadata.create_all(primary_engine)
    replicas.wait_for_lsn(pair.standby, replicas.current_lsn(pair.primary))
    steps = []
    try:
        with replicas.paused(pair.standby), Session() as session:
            note = Note(body=f"routed {time.time_ns()}")  # id from the table's sequence: the cell can run again
            session.add(note)
            session.flush()
            new_id = note.id  # the id came back with the INSERT (RETURNING), read before the commit expires it
            session.commit()
            steps.append(("add + commit (flush)", session.routed[-1], None))
            seen = session.scalars(select(Note.body).where(Note.id == new_id)).all()
            steps.append(("select after the commit", session.routed[-1], len(seen)))
            with session.use_primary():
                seen = session.scalars(select(Note.body).where(Note.id == new_id)).all()
            steps.append(("select in use_primary()", session.routed[-1], len(seen)))
            session.commit()
    finally:
        primary_engine.dispose()
        replica_engine.dispose()
    return {"steps": steps}


# ---------------------------------------------------------------- promotion

def promotion_demo(pair: replicas.Pair) -> dict:
    """Promote the standby: before/after ``pg_is_in_recovery()``, the time ``pg_promote`` took, that it then
    accepts a write, and that the old primary (still running: nobody fenced it) accepts one too (split brain)."""
    before = pair.standby.scalar("SELECT pg_is_in_recovery()")
    if not before:
        raise WorkbookError("This standby was already promoted: run the replica cell again for a new pair.")
    timeline_sql = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
    old_timeline = pair.primary.scalar(timeline_sql)
    try:
        pair.standby.sql("CREATE TABLE refused (x int)")
        refused = False
    except psycopg.errors.ReadOnlySqlTransaction:
        refused = True
    seconds = replicas.promote(pair.standby)
    after = pair.standby.scalar("SELECT pg_is_in_recovery()")
    new_timeline = pair.standby.scalar(timeline_sql)
    pair.standby.sql("CREATE TABLE IF NOT EXISTS written_after_promotion (x int)")
    pair.primary.sql("CREATE TABLE IF NOT EXISTS written_on_old_primary (x int)")
    diverged = (pair.standby.scalar("SELECT to_regclass('written_on_old_primary') IS NULL")
                and pair.primary.scalar("SELECT to_regclass('written_after_promotion') IS NULL"))
    # the old primary's walsender leaves pg_stat_replication once it notices the disconnect: poll for it
    replicas._poll(lambda: not replicas.replication(pair.primary), 10,
                   "The old primary still lists a standby 10 s after the promotion.")
    standbys_left = len(replicas.replication(pair.primary))
    return {"in_recovery_before": before, "write_refused_before": refused, "promote_s": seconds,
            "in_recovery_after": after, "diverged": diverged, "old_primary_standbys": standbys_left,
            "timeline_old_primary": old_timeline, "timeline_promoted": new_timeline}


# ---------------------------------------------------------------- sharding: a constraint no shard can enforce

def global_unique_violation(cluster: replicas.ShardCluster) -> dict:
    """Try unique indexes on the coordinator, on order_id and on (customer_id, order_id) which includes the shard
    key: both refused, with the reason in the error's DETAIL (the partitions are foreign tables). Then insert an
    order_id that already exists for a customer on the other shard: each shard's primary key (customer_id,
    order_id) is satisfied, yet order_id is no longer unique across the shards."""
    refused: dict[str, tuple[str, str] | None] = {}
    with cluster.coordinator.connect() as c:
        for cols in ("order_id", "customer_id, order_id"):
            try:
                c.execute(f"CREATE UNIQUE INDEX ON orders ({cols})")
                refused[cols] = None
            except psycopg.Error as exc:
                refused[cols] = (exc.diag.message_primary, exc.diag.message_detail)
        owner = c.execute("SELECT customer_id FROM orders WHERE order_id = 1").fetchone()[0]
        owner_shard = replicas.shard_of(cluster, owner)
        other = next(cid for cid in range(1, 1000) if replicas.shard_of(cluster, cid) != owner_shard)
        c.execute("INSERT INTO orders VALUES (1, %s, now(), 1.00)", (other,))
        copies = c.execute("SELECT count(*) FROM orders WHERE order_id = 1").fetchone()[0]
        c.execute("DELETE FROM orders WHERE order_id = 1 AND customer_id = %s", (other,))
    return {"unique_index_refused": refused, "copies_of_order_1": copies, "shards": sorted({owner_shard,
            replicas.shard_of(cluster, other)})}


# ---------------------------------------------------------------- exercise 11.read_your_writes

_PAIRS: dict[str, replicas.Pair] = {}


def exercise_pair(db: Any) -> replicas.Pair:
    """The primary + standby of exercise 11.read_your_writes (made by its setup)."""
    conn = as_connection(db)
    p = _PAIRS.get(conn.info.dbname)
    if p is None or p.primary.stopped:
        raise WorkbookError("Run the exercise's setup cell first (ex.setup(db)).")
    return p


def _setup_ryw(conn: psycopg.Connection) -> None:
    old = _PAIRS.pop(conn.info.dbname, None)
    if old is not None:
        old.stop()
    p = replicas.pair("ex11_primary", "ex11_standby")
    p.primary.sql("CREATE TABLE ex_orders (id serial PRIMARY KEY, note text NOT NULL)")
    replicas.wait_for_lsn(p.standby, replicas.current_lsn(p.primary))
    _PAIRS[conn.info.dbname] = p


def _run_with_lag(p: replicas.Pair, fn: Callable, note: str, lag: float) -> tuple[Any, float, str | None]:
    """Call fn(primary, standby, note) with the standby's replay paused, resumed ``lag`` seconds later."""
    replicas.pause_replay(p.standby)
    timer = threading.Timer(lag, lambda: replicas.resume_replay(p.standby))
    result: dict = {}

    def call() -> None:
        try:
            result["value"] = fn(p.primary, p.standby, note)
        except Exception as exc:  # noqa: BLE001 - reported in one sentence
            result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"

    t0 = time.perf_counter()
    timer.start()
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(lag + 20)
    took = time.perf_counter() - t0
    timer.join()
    replicas.resume_replay(p.standby)
    if worker.is_alive():
        return None, took, "your function did not return within 20 s of the standby catching up"
    return result.get("value"), took, result.get("error")


#: The two lags of a check are drawn in these ranges (seconds), so a fixed pause cannot be tuned to them.
RYW_SHORT_LAG, RYW_LONG_LAG = (0.2, 0.4), (2.0, 3.0)
#: How much longer than the lag a right answer may take (connection set-up on a loaded machine): an LSN wait
#: returns a few milliseconds after the standby resumes.
RYW_SLACK = 1.0


def _mentions(answer: Any, word: str) -> bool:
    try:
        return word in inspect.getsource(answer)
    except (OSError, TypeError):
        return False


def _check_ryw(conn: psycopg.Connection, answer: Any) -> CheckResult:
    p = _PAIRS.get(conn.info.dbname)
    if p is None or p.primary.stopped:
        return CheckResult(False, "Run the exercise's setup cell first (ex.setup(db)).")
    rng = random.Random(time.time_ns())
    lags = (round(rng.uniform(*RYW_SHORT_LAG), 2), round(rng.uniform(*RYW_LONG_LAG), 2))
    outcomes = []
    for i, lag in enumerate(lags):
        note = f"check {time.time_ns()} {i}"
        value, took, error = _run_with_lag(p, answer, note, lag)
        if error:
            return CheckResult(False, f"Your function failed: {error}.")
        written = p.primary.scalar("SELECT count(*) FROM ex_orders WHERE note = %s", (note,))
        if written != 1:
            return CheckResult(False, f"The order was written {written} times on the primary, not once: keep the "
                                      "INSERT on the primary exactly as it is.")
        outcomes.append((value == note, took, lag))
    (short_ok, short_took, short_lag), (long_ok, long_took, long_lag) = outcomes
    sleep_hint = ("a fixed pause is a guess about the lag. Wait until the standby has applied the commit (its "
                  "pg_last_wal_replay_lsn() reaches the primary's pg_current_wal_lsn() read after the commit).")
    if short_ok and short_took > short_lag + RYW_SLACK:
        return CheckResult(False, f"The read saw the order, but took {short_took:.1f} s with the standby only "
                                  f"{short_lag:.2f} s behind: " + sleep_hint)
    if short_ok and long_ok:
        if long_took > long_lag + 5:
            return CheckResult(False, "The read saw the order, but only seconds after the standby had it: poll for "
                                      "the commit's LSN instead of sleeping a fixed time.")
        return CheckResult(True, f"The read sees the order whether the standby is {short_lag:.2f} s or "
                                 f"{long_lag:.2f} s behind. Waiting for the commit's LSN keeps the read on the "
                                 "replica; reading from the primary puts it back on the server you wanted to "
                                 "offload.")
    if not short_ok and _mentions(answer, "remote_apply") and not any(
            r["sync_state"] == "sync" for r in replicas.replication(p.primary)):
        return CheckResult(False, "remote_apply waits only for standbys named in synchronous_standby_names, and "
                                  "that is empty on this pair, so the commit waited for nothing "
                                  "(replicas.set_sync(primary, standby.name) names it).")
    if short_ok and not long_ok:
        return CheckResult(False, f"It worked with the standby {short_lag:.2f} s behind and missed the order at "
                                  f"{long_lag:.2f} s: " + sleep_hint)
    return CheckResult(False, "The read ran before the standby had applied the commit, so it missed the order. "
                              "Note the primary's pg_current_wal_lsn() after the commit and poll the standby's "
                              "pg_last_wal_replay_lsn() (received WAL, pg_last_wal_receive_lsn(), is not yet "
                              "applied), or send this read to the primary.")


register(Exercise(
    id="11.read_your_writes",
    title="Make the read after the write consistent",
    prompt=(
        "pair = exercise_pair(db) is a primary and a streaming standby with a table ex_orders (id, note).\n"
        "naive_read_after_write(primary, standby, note) inserts an order on the primary and reads it back from the\n"
        "standby: when the standby lags, it returns None. Write a function with the same three parameters that\n"
        "inserts the order on the primary and returns its note, read so that it is always there, whatever the lag.\n"
        "The check calls it twice, while the standby is a fraction of a second and then a few seconds behind\n"
        "(drawn at random each time)."
    ),
    setup_fn=_setup_ryw,
    checker=_check_ryw,
    answer_kind=type(naive_read_after_write),
    answer_hint="a function f(primary, standby, note) that returns the note",
    lesson="11_scaling",
))


# ---------------------------------------------------------------- exercise 11.route_shard

_CLUSTERS: dict[str, replicas.ShardCluster] = {}


def exercise_cluster(db: Any) -> replicas.ShardCluster:
    """The coordinator and shards of exercise 11.route_shard (made by its setup)."""
    conn = as_connection(db)
    c = _CLUSTERS.get(conn.info.dbname)
    if c is None or c.coordinator.stopped:
        raise WorkbookError("Run the exercise's setup cell first (ex.setup(db)).")
    return c


#: The customers the check asks about (seeded; the exercise cluster has customers 1 to 100).
EX_CUSTOMERS = sorted(random.Random(11).sample(range(1, 101), 20))


def _setup_route(conn: psycopg.Connection) -> None:
    old = _CLUSTERS.pop(conn.info.dbname, None)
    if old is not None:
        old.stop()
    _CLUSTERS[conn.info.dbname] = replicas.shard_cluster(n_orders=2_000, n_customers=100)


def _check_route(conn: psycopg.Connection, answer: Any) -> CheckResult:
    cluster = _CLUSTERS.get(conn.info.dbname)
    if cluster is None or cluster.coordinator.stopped:
        return CheckResult(False, "Run the exercise's setup cell first (ex.setup(db)).")
    names = cluster.shard_names()
    n = len(names)
    got, want = [], []
    for cid in EX_CUSTOMERS:
        try:
            value = answer(cluster, cid)
        except Exception as exc:  # noqa: BLE001 - reported in one sentence
            return CheckResult(False, f"Your function failed for customer {cid}: {type(exc).__name__}: "
                                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.")
        got.append(value.name if isinstance(value, private.PrivateServer) else str(value).strip())
        want.append(replicas.shard_of(cluster, cid))
    if "coordinator" in got:
        return CheckResult(False, "The coordinator stores no rows: its partitions are foreign tables. Which shard "
                                  "does it send the query to?")
    bad = sorted({g for g in got if g not in names})
    if bad:
        return CheckResult(False, f"{bad[0]!r} is not a shard: return a shard's name, one of {', '.join(names)}.")
    right = sum(g == w for g, w in zip(got, want))
    if right == len(want):
        return CheckResult(True, f"Right for all {len(want)} customers: a query for one customer goes to that "
                                 "shard alone, and the coordinator (not your code) knows which.")
    if got == [f"shard{cid % n}" for cid in EX_CUSTOMERS]:
        return CheckResult(False, f"customer_id % {n} is not how hash partitioning routes (right for {right} of "
                                  f"{len(want)}): PostgreSQL hashes the key first, then takes the remainder. Ask "
                                  "the coordinator (EXPLAIN VERBOSE shows the Foreign Scan it keeps; "
                                  "tableoid::regclass names the partition a row came from).")
    if len(set(got)) == 1:
        return CheckResult(False, f"Always {got[0]!r}: right for {right} of {len(want)} customers. Each customer's "
                                  "shard depends on the hash of its id.")
    wrong = next(cid for cid, g, w in zip(EX_CUSTOMERS, got, want) if g != w)
    return CheckResult(False, f"Right for {right} of {len(want)} customers; customer {wrong} is not on "
                              f"{got[EX_CUSTOMERS.index(wrong)]}. EXPLAIN VERBOSE on the coordinator shows which "
                              "foreign partition the query keeps.")


register(Exercise(
    id="11.route_shard",
    title="Route one customer's query to its shard",
    prompt=(
        "cluster = exercise_cluster(db) is a coordinator and two shards (cluster.shards), orders hashed by\n"
        "customer_id. Write a function shard_for(cluster, customer_id) that returns the name of the shard holding\n"
        "that customer's orders ('shard0' or 'shard1', or the server itself), found from the coordinator\n"
        "(cluster.coordinator.scalar(...), cluster.explain(...)), not by a formula of your own.\n"
        "The check asks about 20 customers."
    ),
    setup_fn=_setup_route,
    checker=_check_route,
    answer_kind=type(naive_read_after_write),
    answer_hint="a function shard_for(cluster, customer_id) that returns a shard's name such as 'shard0'",
    lesson="11_scaling",
))
