"""Read replicas and shards on private throw-away servers (lesson 11, scaling out).

Built on :mod:`helpers.private` (which guarantees the servers go away, even when the kernel is killed), so nothing
here touches the learner's server; a managed server cannot be given a replica anyway::

    from helpers import replicas
    pair = replicas.pair()                       # primary + streaming standby (pg_basebackup)
    replicas.replication(pair.primary)           # pg_stat_replication, one dict per standby
    lsn = replicas.write(pair.primary, "INSERT ...")
    replicas.wait_for_lsn(pair.standby, lsn)     # read-your-writes on the standby
    replicas.set_sync(pair.primary, "standby")   # synchronous_commit = remote_apply for that standby
    replicas.promote(pair.standby)               # pg_promote(): the standby becomes a primary
    cluster = replicas.shard_cluster()           # two shards + a coordinator with postgres_fdw partitions

Mechanisms (PostgreSQL docs, "High Availability, Load Balancing, and Replication" and "postgres_fdw"): a standby
replays the primary's WAL; ``pg_stat_replication.replay_lsn`` is how far it has applied, so the bytes between
``pg_current_wal_lsn()`` and it are the lag in WAL bytes; ``replay_lag`` is the time measured by the primary.
``pg_wal_replay_pause()`` stops the standby applying WAL (it still receives it), which makes a stale read
deterministic. With ``synchronous_commit = remote_apply`` and the standby named in ``synchronous_standby_names``,
a commit returns only once the standby has applied it.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import psycopg
from psycopg.sql import SQL, Identifier, Literal
from sqlalchemy import Delete, Insert, Select, TextClause, Update, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from helpers import private
from helpers.core.errors import WorkbookError

__all__ = ["Pair", "pair", "standby", "replication", "lag_bytes", "write", "current_lsn", "replay_lsn",
           "wait_for_lsn", "pause_replay", "resume_replay", "paused", "set_sync", "promote", "write_burst",
           "router", "RoutingSession", "ShardCluster", "shard_cluster", "SHARD_SCHEMA", "shard_of"]

#: Settings of a primary that will take standbys (most are 18's defaults; stated so the lesson can show them).
PRIMARY_SETTINGS = {"wal_level": "replica", "max_wal_senders": 4, "hot_standby": "on",
                    "wal_keep_size": "64MB", "synchronous_standby_names": ""}


@dataclass
class Pair:
    """A primary and its streaming standby (``stop()`` discards both)."""

    primary: private.PrivateServer
    standby: private.PrivateServer
    extra: list = field(default_factory=list)

    def stop(self) -> None:
        for srv in (*self.extra, self.standby, self.primary):
            srv.stop()

    def __enter__(self) -> "Pair":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def standby(primary: private.PrivateServer, name: str = "standby", timeout: float = 60) -> private.PrivateServer:
    """A streaming standby of ``primary``: ``pg_basebackup -X stream -c fast`` into a private directory, then a
    server started from that copy with ``standby.signal`` and a ``primary_conninfo`` naming it ``name`` (its
    ``application_name``, the name ``synchronous_standby_names`` and ``pg_stat_replication`` use)."""
    base = primary.workdir(f"{name}_base")
    primary.run("pg_basebackup", "-D", base, "-d", primary.conninfo, "-X", "stream", "-c", "fast", "--no-sync",
                timeout=300)
    conninfo = psycopg.conninfo.make_conninfo(primary.conninfo, application_name=name)
    srv = private.spawn(name, {"primary_conninfo": conninfo, "hot_standby": "on", "synchronous_standby_names": ""},
                        from_dir=base, standby=True)
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    _poll(lambda: any(r["application_name"] == name and r["state"] == "streaming" for r in replication(primary)),
          timeout, f"The standby {name!r} did not start streaming within {timeout:.0f} s ({srv.log_tail()}).")
    return srv


def pair(name: str = "primary", standby_name: str = "standby", **settings: Any) -> Pair:
    """Start a primary (``settings`` added to :data:`PRIMARY_SETTINGS`) and one streaming standby of it."""
    primary = private.spawn(name, {**PRIMARY_SETTINGS, **settings})
    try:
        return Pair(primary, standby(primary, standby_name))
    except BaseException:
        primary.stop()
        raise


def _poll(cond: Any, timeout: float, message: str, every: float = 0.01) -> float:
    """Poll ``cond()`` until true; returns the seconds it took, or raises ``message`` after ``timeout``."""
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > timeout:
            raise WorkbookError(message)
        time.sleep(every)
    return time.perf_counter() - start


def replication(primary: private.PrivateServer) -> list[dict]:
    """``pg_stat_replication`` on the primary: one dict per standby (name, state, sync_state, lag bytes, lags)."""
    with primary.connect() as conn:
        cur = conn.execute("""
            SELECT application_name, state, sync_state,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)::bigint   AS send_lag_bytes,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes,
                   extract(epoch FROM replay_lag)::float8 AS replay_lag_s
              FROM pg_stat_replication ORDER BY application_name""")
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def lag_bytes(primary: private.PrivateServer, name: str = "standby") -> int | None:
    """WAL bytes the standby ``name`` has not applied yet (None if it is not connected)."""
    for row in replication(primary):
        if row["application_name"] == name:
            return row["replay_lag_bytes"]
    return None


def current_lsn(primary: private.PrivateServer | psycopg.Connection) -> str:
    """``pg_current_wal_lsn()``: the end of the WAL the primary has written (read it right after a commit)."""
    if isinstance(primary, psycopg.Connection):
        return str(primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
    return str(primary.scalar("SELECT pg_current_wal_lsn()"))


def replay_lsn(srv: private.PrivateServer) -> str | None:
    """``pg_last_wal_replay_lsn()`` of a standby: the last WAL position it has applied."""
    v = srv.scalar("SELECT pg_last_wal_replay_lsn()")
    return None if v is None else str(v)


def write(primary: private.PrivateServer, statement: str, params: Any = None, dbname: str = "postgres") -> str:
    """Run one writing statement in its own transaction on the primary; returns the WAL position after the commit."""
    with primary.connect(dbname) as conn:
        conn.execute(statement, params)
        return current_lsn(conn)


def wait_for_lsn(srv: private.PrivateServer, lsn: str, timeout: float = 30) -> float:
    """Poll a standby until it has replayed up to ``lsn`` (``pg_last_wal_replay_lsn() >= lsn``); returns seconds.
    A paused replay makes this time out, in one sentence."""
    with srv.connect() as conn:
        def done() -> bool:
            return bool(conn.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
                                     (lsn,)).fetchone()[0])
        return _poll(done, timeout, f"The standby {srv.name!r} did not replay up to {lsn} within {timeout:.0f} s "
                                    "(is its replay paused? resume_replay() it).", every=0.005)


def pause_replay(srv: private.PrivateServer) -> None:
    """``pg_wal_replay_pause()``: the standby keeps receiving WAL but stops applying it (poll until paused)."""
    with srv.connect() as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        _poll(lambda: conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused", 30,
              f"The standby {srv.name!r} did not pause its replay.")


def resume_replay(srv: private.PrivateServer) -> None:
    srv.sql("SELECT pg_wal_replay_resume()")


@contextlib.contextmanager
def paused(srv: private.PrivateServer) -> Iterator[None]:
    """Replay paused inside the block, resumed after it (even on an error)."""
    pause_replay(srv)
    try:
        yield
    finally:
        resume_replay(srv)


def set_sync(primary: private.PrivateServer, standby_name: str | None, timeout: float = 30) -> None:
    """Name ``standby_name`` in ``synchronous_standby_names`` (None: back to asynchronous) and wait until
    ``pg_stat_replication`` shows it as ``sync`` (or no standby as sync)."""
    value = "" if standby_name is None else f'"{standby_name}"'
    with primary.connect() as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = " + psycopg.sql.quote(value))
        conn.execute("SELECT pg_reload_conf()")
    want = "async" if standby_name is None else "sync"
    _poll(lambda: all(r["sync_state"] == want for r in replication(primary)
                      if standby_name is None or r["application_name"] == standby_name), timeout,
          f"pg_stat_replication did not show {want} within {timeout:.0f} s.")


def write_burst(primary: private.PrivateServer, rows: int = 200_000, sample_every: float = 0.002,
                name: str = "standby", standby: private.PrivateServer | None = None) -> dict:
    """Insert ``rows`` rows on the primary (one statement, in its own thread) while sampling the standby's lag;
    returns the WAL bytes written, the samples' maximum byte lag and ``replay_lag``, and how long after the commit
    everything was applied: measured on ``standby`` itself (``pg_last_wal_replay_lsn()``) when it is given, else
    as the primary saw it in ``pg_stat_replication.replay_lsn`` (the standby's feedback, a little later)."""
    primary.sql("CREATE TABLE IF NOT EXISTS burst (id bigint, payload text)")
    before = current_lsn(primary)
    done: dict = {}

    def work() -> None:
        done["lsn"] = write(primary, "INSERT INTO burst SELECT g, repeat('x', 100) FROM generate_series(1, %s) g",
                            (rows,))

    t = threading.Thread(target=work)
    max_bytes, max_time, samples = 0, 0.0, 0
    with primary.connect() as conn:
        t.start()
        while t.is_alive() or samples == 0:
            row = conn.execute("""SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
                                         coalesce(extract(epoch FROM replay_lag), 0)::float8
                                    FROM pg_stat_replication WHERE application_name = %s""", (name,)).fetchone()
            if row:
                max_bytes, max_time = max(max_bytes, row[0] or 0), max(max_time, row[1])
            samples += 1
            time.sleep(sample_every)
        t.join()
        wal = int(conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (done["lsn"], before)).fetchone()[0])
    if standby is not None:
        return {"wal_bytes": wal, "max_lag_bytes": max_bytes, "max_replay_lag_s": max_time, "samples": samples,
                "catch_up_s": wait_for_lsn(standby, done["lsn"], timeout=60), "lsn": done["lsn"]}
    catch_up = _poll(lambda: bool(primary.scalar(
        "SELECT coalesce(bool_and(replay_lsn >= %s::pg_lsn), false) FROM pg_stat_replication "
        "WHERE application_name = %s", (done["lsn"], name))), 60, "The standby did not catch up within 60 s.")
    return {"wal_bytes": wal, "max_lag_bytes": max_bytes, "max_replay_lag_s": max_time, "samples": samples,
            "catch_up_s": catch_up, "lsn": done["lsn"]}


def replay_lsn_of(primary: private.PrivateServer, name: str) -> str | None:
    v = primary.scalar("SELECT replay_lsn FROM pg_stat_replication WHERE application_name = %s", (name,))
    return None if v is None else str(v)


def promote(srv: private.PrivateServer, timeout: int = 60) -> float:
    """``pg_promote(true, timeout)``: end recovery, the standby accepts writes; returns seconds."""
    start = time.perf_counter()
    if not srv.scalar("SELECT pg_promote(true, %s)", (timeout,)):
        raise WorkbookError(f"{srv.name!r} was not promoted within {timeout} s ({srv.log_tail()}).")
    return time.perf_counter() - start


# ---------------------------------------------------------------- routing reads in SQLAlchemy

def router(primary_url: str, replica_url: str) -> tuple[Any, Any, Any]:
    """Two engines and a ``sessionmaker`` of :class:`RoutingSession` that sends writes (and anything in a
    ``session.use_primary()`` block) to the primary and other reads to the replica; returns (primary, replica,
    Session)."""
    p = create_engine(primary_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool)
    r = create_engine(replica_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool)
    return p, r, sessionmaker(class_=RoutingSession, engines={"primary": p, "replica": r})


class RoutingSession(Session):
    """A SQLAlchemy session over two engines: flushes, INSERT/UPDATE/DELETE statements, ``SELECT ... FOR UPDATE``
    and raw ``text()`` SQL (it may write: ``UPDATE``, ``nextval()``) go to ``engines['primary']``, and so does
    everything after them until the transaction ends (it must see its own writes) and everything inside ``use_primary()``; other reads go to ``engines['replica']``. ``routed`` lists
    the engine each statement was sent to. A read whose result decides a write (read, compute, update) belongs
    in ``use_primary()``: on the replica it may be stale, and the update then loses a write. (SQLAlchemy asks
    ``get_bind`` for every statement; see its "Partitioning Strategies" / custom vertical partitioning docs.
    ``_flushing`` is a private Session attribute, as in that docs example; tried with SQLAlchemy 2.1.)"""

    def __init__(self, *args: Any, engines: dict, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.engines = engines
        self.routed: list[str] = []
        self._force_primary = 0
        self._wrote = False

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
        writing = (self._flushing or isinstance(clause, (Insert, Update, Delete, TextClause))
                   or (isinstance(clause, Select) and clause._for_update_arg is not None))
        self._wrote = self._wrote or writing
        name = "primary" if (writing or self._force_primary or self._wrote) else "replica"
        self.routed.append(name)
        return self.engines[name]

    @contextlib.contextmanager
    def use_primary(self) -> Iterator[None]:
        """Reads inside the block go to the primary (read-your-writes for a request that just wrote)."""
        self._force_primary += 1
        try:
            yield
        finally:
            self._force_primary -= 1

    def commit(self) -> None:
        super().commit()
        self._wrote = False

    def rollback(self) -> None:
        super().rollback()
        self._wrote = False


# ---------------------------------------------------------------- sharding with postgres_fdw

#: The table each shard holds (one per shard, named orders_<shard>), and the coordinator's partitioned parent.
SHARD_SCHEMA = """CREATE TABLE {name} (
    order_id    bigint NOT NULL,
    customer_id bigint NOT NULL,
    ordered_at  timestamptz NOT NULL,
    total       numeric(10,2) NOT NULL,
    PRIMARY KEY (customer_id, order_id))"""


@dataclass
class ShardCluster:
    """A coordinator with a hash-partitioned ``orders`` whose partitions are foreign tables on the shards."""

    coordinator: private.PrivateServer
    shards: list[private.PrivateServer]

    def stop(self) -> None:
        for srv in (self.coordinator, *self.shards):
            srv.stop()

    def __enter__(self) -> "ShardCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def explain(self, query: str, params: Any = None, settings: dict | None = None) -> list[str]:
        """``EXPLAIN (VERBOSE, COSTS OFF)`` on the coordinator, without the ``Query Identifier`` line (it changes
        between runs); ``settings`` (e.g. ``{"enable_partitionwise_aggregate": "on"}``) are SET first."""
        with self.coordinator.connect() as conn:
            for k, v in (settings or {}).items():
                conn.execute("SELECT set_config(%s, %s, false)", (k, str(v)))
            rows = conn.execute("EXPLAIN (VERBOSE, COSTS OFF) " + query, params).fetchall()
        return [r[0] for r in rows if not r[0].lstrip().startswith("Query Identifier")]

    def rows_per_shard(self, table: str = "orders") -> dict[str, int]:
        return {s.name: int(s.scalar(SQL("SELECT count(*) FROM {}").format(Identifier(f"{table}_{s.name}"))))
                for s in self.shards}

    def shard_names(self) -> list[str]:
        return [s.name for s in self.shards]


def shard_cluster(n_orders: int = 20_000, n_customers: int = 500, names: Sequence[str] = ("shard0", "shard1")
                  ) -> ShardCluster:
    """Two (or more) shard servers and a coordinator: ``orders`` on the coordinator is ``PARTITION BY HASH
    (customer_id)``, each partition a postgres_fdw foreign table on one shard (``async_capable``, so the shards
    are scanned concurrently). ``n_orders`` deterministic orders (a fixed formula, no random()) are inserted
    through the coordinator (each row goes to its shard)."""
    shards: list[private.PrivateServer] = []
    coord = None
    try:
        for name in names:
            srv = private.spawn(name)
            srv.sql(SHARD_SCHEMA.format(name=Identifier(f"orders_{name}").as_string()))
            shards.append(srv)
        coord = private.spawn("coordinator")
        with coord.connect() as c:
            c.execute("CREATE EXTENSION postgres_fdw")
            c.execute("CREATE TABLE orders (order_id bigint NOT NULL, customer_id bigint NOT NULL, "
                      "ordered_at timestamptz NOT NULL, total numeric(10,2) NOT NULL) PARTITION BY HASH (customer_id)")
            for i, srv in enumerate(shards):
                server, table = Identifier(srv.name), f"orders_{srv.name}"
                c.execute(SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {}, port {}, "
                              "dbname 'postgres', async_capable 'true', batch_size '1000', fetch_size '10000')")
                          .format(server, Literal(str(srv.socket_dir)), Literal(str(srv.port))))
                c.execute(SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS (user 'postgres')").format(server))
                c.execute(SQL("CREATE FOREIGN TABLE {} PARTITION OF orders FOR VALUES WITH (MODULUS {}, REMAINDER {}) "
                              "SERVER {} OPTIONS (table_name {})")
                          .format(Identifier(table), Literal(len(shards)), Literal(i), server, Literal(table)))
            c.execute("""INSERT INTO orders
                         SELECT g, 1 + (g * 7919) %% %s, timestamptz '2026-01-01' + g * interval '1 minute',
                                (1 + (g * 31) %% 200)::numeric(10,2)
                           FROM generate_series(1, %s) g""", (n_customers, n_orders))
            c.execute("ANALYZE orders")
        return ShardCluster(coord, shards)
    except BaseException:
        for srv in (coord, *shards):
            if srv is not None:
                srv.stop()
        raise


def shard_of(cluster: ShardCluster, customer_id: int) -> str:
    """The shard holding ``customer_id`` (the coordinator's own routing: ``satisfies_hash_partition``)."""
    n = len(cluster.shards)
    with cluster.coordinator.connect() as c:
        for i, srv in enumerate(cluster.shards):
            if c.execute("SELECT satisfies_hash_partition('orders'::regclass, %s, %s, %s::bigint)",
                         (n, i, customer_id)).fetchone()[0]:
                return srv.name
    raise WorkbookError(f"No shard takes customer {customer_id}.")
