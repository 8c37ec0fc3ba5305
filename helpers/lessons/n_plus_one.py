"""Notebook 04 (N+1 queries): a small ORM of the music store, timed ORM runs, a statement budget, exercises.

The lesson uses the store's own models (:mod:`helpers.data.models`): artist → albums → tracks,
playlists ⇄ tracks (through ``playlist_track``), customer → invoices, with SQLAlchemy's default
``lazy="select"``, which causes N+1. :func:`make_models` builds a second, *strict* mapping of those
tables for section 4, where every relationship is ``lazy="raise"``. It has to be a mapping of its own:
a relationship's ``lazy`` strategy is fixed when its class is mapped, and a table is mapped once per
registry. It maps only the columns the lesson reads; ``tests/test_lesson04.py`` checks each of them against
:mod:`helpers.data.models` (same table, name and type), so the two cannot drift apart.

:func:`time_orm` runs a piece of ORM code in a fresh session several times and reports what it
cost: statements (counted with :func:`helpers.counter.count_statements`), rows and values the
server sent back, and the median time. :func:`at_most` is a statement budget for tests.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import psycopg
from sqlalchemy import Column, ForeignKey, Numeric, Select, Table, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from helpers.counter import StatementLog, count_statements
from helpers.data import models
from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_time

__all__ = [
    "make_models", "Artist", "Album", "Track", "Playlist", "Customer", "Invoice",
    "OrmRun", "time_orm", "at_most", "StatementBudgetExceeded",
    "catalog", "invoice_totals", "engine_for", "track_siblings", "sibling_rows_expected",
    "stat_statements", "reset_own_statements", "own_statements", "shape_label", "LatencyModel", "latency_model",
]


# ---------------------------------------------------------------------------------------------- the models

def make_models(lazy: str = "raise") -> SimpleNamespace:
    """Artist, Album, Track, Playlist, Customer, Invoice mapped again onto the store's tables, strict (lesson 04 §4).

    Every relationship gets ``lazy=lazy``: ``"raise"`` refuses to load on access, so each query must say how
    to load what it needs (``selectinload``, ``joinedload``); ``"select"`` gives the N+1 default again.
    Each call builds classes in a new registry (see the module docstring for why a second mapping).
    """

    class Base(DeclarativeBase):
        pass

    playlist_track = Table(
        "playlist_track", Base.metadata,
        Column("playlist_id", ForeignKey("playlist.playlist_id"), primary_key=True),
        Column("track_id", ForeignKey("track.track_id"), primary_key=True),
    )

    class Artist(Base):
        __tablename__ = "artist"
        artist_id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None]
        albums: Mapped[list["Album"]] = relationship(
            back_populates="artist", lazy=lazy, order_by="Album.album_id")

        def __repr__(self) -> str:
            return f"Artist({self.artist_id}, {self.name!r})"

    class Album(Base):
        __tablename__ = "album"
        album_id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        artist_id: Mapped[int] = mapped_column(ForeignKey("artist.artist_id"))
        artist: Mapped[Artist] = relationship(back_populates="albums", lazy=lazy)
        tracks: Mapped[list["Track"]] = relationship(
            back_populates="album", lazy=lazy, order_by="Track.track_id")

        def __repr__(self) -> str:
            return f"Album({self.album_id}, {self.title!r})"

    class Track(Base):
        __tablename__ = "track"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        album_id: Mapped[int | None] = mapped_column(ForeignKey("album.album_id"))
        composer: Mapped[str | None]
        milliseconds: Mapped[int]
        unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        album: Mapped[Album | None] = relationship(back_populates="tracks", lazy=lazy)
        playlists: Mapped[list["Playlist"]] = relationship(
            secondary=playlist_track, back_populates="tracks", lazy=lazy)

        def __repr__(self) -> str:
            return f"Track({self.track_id}, {self.name!r})"

    class Playlist(Base):
        __tablename__ = "playlist"
        playlist_id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None]
        tracks: Mapped[list[Track]] = relationship(
            secondary=playlist_track, back_populates="playlists", lazy=lazy, order_by=Track.track_id)

        def __repr__(self) -> str:
            return f"Playlist({self.playlist_id}, {self.name!r})"

    class Customer(Base):
        __tablename__ = "customer"
        customer_id: Mapped[int] = mapped_column(primary_key=True)
        first_name: Mapped[str]
        last_name: Mapped[str]
        email: Mapped[str]
        country: Mapped[str | None]
        invoices: Mapped[list["Invoice"]] = relationship(
            back_populates="customer", lazy=lazy, order_by="Invoice.invoice_id")

        def __repr__(self) -> str:
            return f"Customer({self.customer_id}, {self.first_name!r} {self.last_name!r})"

    class Invoice(Base):
        __tablename__ = "invoice"
        invoice_id: Mapped[int] = mapped_column(primary_key=True)
        customer_id: Mapped[int] = mapped_column(ForeignKey("customer.customer_id"))
        total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        customer: Mapped[Customer] = relationship(back_populates="invoices", lazy=lazy)

        def __repr__(self) -> str:
            return f"Invoice({self.invoice_id}, {self.total})"

    return SimpleNamespace(Base=Base, Artist=Artist, Album=Album, Track=Track, Playlist=Playlist,
                           Customer=Customer, Invoice=Invoice, playlist_track=playlist_track, lazy=lazy)


# The lesson's everyday models are the store's (lazy="select", the N+1 default).
Artist = models.Artist
Album = models.Album
Track = models.Track
Playlist = models.Playlist
Customer = models.Customer
Invoice = models.Invoice


# ---------------------------------------------------------------------------------------------- the loops

def catalog(session: Session, stmt: Select) -> list[tuple[str, int, int]]:
    """For each artist ``stmt`` returns: (name, albums, tracks), touching ``artist.albums`` and ``album.tracks``."""
    rows = []
    for artist in session.scalars(stmt).unique():
        albums = artist.albums
        rows.append((artist.name or "", len(albums), sum(len(album.tracks) for album in albums)))
    return rows


def invoice_totals(session: Session, stmt: Select) -> list[tuple[int, int, Decimal]]:
    """For each customer ``stmt`` returns: (customer_id, invoices, total spent), touching ``customer.invoices``."""
    out = []
    for customer in session.scalars(stmt).unique():
        invoices = customer.invoices
        out.append((customer.customer_id, len(invoices), sum((i.total for i in invoices), Decimal("0"))))
    return out


def track_siblings(session: Session, stmt: Select) -> list[tuple[int, int, int]]:
    """For each track ``stmt`` returns: (track_id, playlists, invoice lines): two sibling collections of one parent."""
    return [(t.track_id, len(t.playlists), len(t.invoice_lines)) for t in session.scalars(stmt).unique()]


def sibling_rows_expected(conn: Any, album_ids: list[int]) -> dict[str, int]:
    """What the database holds for the tracks of ``album_ids``, to predict rows received exactly (lesson 04 §3).

    ``joined``: rows of one ``LEFT OUTER JOIN`` of track with both its playlists and its invoice lines, the sum over
    tracks of max(1, playlists) x max(1, lines) (a track with neither still gives one row). ``selectin``: the
    tracks, plus one row per (track, playlist) pair, plus one row per invoice line: a sum, not a product.
    """
    conn = getattr(conn, "conn", conn)
    tracks, pairs, lines, joined = conn.execute(
        "WITH t AS (SELECT track_id FROM track WHERE album_id = ANY(%s)), "
        "p AS (SELECT track_id, count(*) AS n FROM playlist_track WHERE track_id IN (SELECT track_id FROM t) "
        "      GROUP BY track_id), "
        "l AS (SELECT track_id, count(*) AS n FROM invoice_line WHERE track_id IN (SELECT track_id FROM t) "
        "      GROUP BY track_id) "
        "SELECT count(*), coalesce(sum(p.n), 0), coalesce(sum(l.n), 0), "
        "       sum(greatest(coalesce(p.n, 0), 1) * greatest(coalesce(l.n, 0), 1)) "
        "FROM t LEFT JOIN p USING (track_id) LEFT JOIN l USING (track_id)", (list(album_ids),)).fetchone()
    return {"tracks": int(tracks), "playlist_pairs": int(pairs), "invoice_lines": int(lines),
            "joined": int(joined or 0), "selectin": int(tracks) + int(pairs) + int(lines)}


# ---------------------------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class OrmRun:
    """What one piece of ORM code cost (lesson 04): statements, rows and values received, and time."""

    name: str
    log: StatementLog
    rows: int
    values: int
    times_s: tuple[float, ...]
    result: Any

    @property
    def statements(self) -> int:
        return self.log.count

    @property
    def min_round_trips(self) -> int:
        """The fewest round trips the code can take: its statements plus the transaction's BEGIN and its end.

        psycopg sends ``BEGIN`` before the first statement of a transaction and the session ends with
        ``ROLLBACK`` or ``COMMIT``, each a round trip of its own. psycopg may add a few more (preparing a
        statement it has seen 5 times, ``DEALLOCATE ALL`` after a rollback): the latency proxy counts those.
        """
        return self.log.round_trips + 1 + self.log.commits + self.log.rollbacks

    @property
    def median(self) -> float:
        return statistics.median(self.times_s)

    @property
    def best(self) -> float:
        """The fastest run: the least disturbed by other work on the machine (what the checks compare)."""
        return min(self.times_s)

    def counts_text(self) -> str:
        """``lazy  120 statements,    812 rows,   1,624 values`` (deterministic)."""
        return (f"{self.name:<12} {self.statements:>4} statements, {self.rows:>6,} rows, "
                f"{self.values:>7,} values received")

    def text(self) -> str:
        return f"{self.counts_text()}, {fmt_time(self.median)} median (n={len(self.times_s)})"

    def __str__(self) -> str:
        return self.text()


@contextlib.contextmanager
def _count_rows(engine: Any) -> Iterator[list[int]]:
    """Rows and values (rows x columns) every statement returned, as ``[rows, values]``."""
    totals = [0, 0]

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if cursor.description is not None and cursor.rowcount and cursor.rowcount > 0:
            totals[0] += cursor.rowcount
            totals[1] += cursor.rowcount * len(cursor.description)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield totals
    finally:
        event.remove(engine, "after_cursor_execute", after)


def time_orm(engine: Any, fn: Callable[[Session], Any], *, name: str = "", repeat: int = 5,
             warmup: int = 1) -> OrmRun:
    """Run ``fn(session)`` in a fresh session ``warmup + repeat`` times; count and time it (lesson 04).

    Each run gets a new :class:`Session` (an empty identity map), so every run loads everything
    again, as a new web request would. The statements and rows are those of the last run; all
    runs must issue the same number of statements (else ``RuntimeError``).
    """
    engine = getattr(engine, "engine", engine)
    times: list[float] = []
    counts: set[int] = set()
    log = StatementLog()
    rows = [0, 0]
    result = None
    for i in range(warmup + repeat):
        with count_statements(engine) as log, _count_rows(engine) as rows:
            t0 = time.perf_counter()
            with Session(engine) as session:
                result = fn(session)
            elapsed = time.perf_counter() - t0
        counts.add(log.count)
        if i >= warmup:
            times.append(elapsed)
    if len(counts) > 1:
        raise RuntimeError(f"{name or 'the code'} issued a different number of statements on each run: {sorted(counts)}")
    return OrmRun(name, log, rows[0], rows[1], tuple(times), result)


class StatementBudgetExceeded(AssertionError):
    """Raised by :func:`at_most` when a block sends more statements than allowed."""


@contextlib.contextmanager
def at_most(engine: Any, limit: int) -> Iterator[StatementLog]:
    """A statement budget for tests (lesson 04): fail if the block sends more than ``limit`` statements.

    ::

        with at_most(engine, 2):
            page = render_customer_page(session)
    """
    with count_statements(engine) as log:
        yield log
    if log.count > limit:
        raise StatementBudgetExceeded(f"{log.count} statements, the budget is {limit}: {log.report()}")


def engine_for(conn: psycopg.Connection) -> Any:
    """A SQLAlchemy engine on the same database and role as a psycopg connection (used by the checks)."""
    from sqlalchemy import create_engine

    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password

    def creator() -> psycopg.Connection:
        return psycopg.connect(**params)  # params carry the lesson's session options

    return create_engine("postgresql+psycopg://", creator=creator)


# ---------------------------------------------------------------------------------------------- the server's view

def stat_statements(conn: Any) -> str | None:
    """``None`` if ``pg_stat_statements`` can be read in the lesson database, else one sentence saying why not.

    Creates the extension in the lesson database if needed. The library must also be in
    ``shared_preload_libraries`` (a server setting that needs a restart); lesson 09 covers the details.
    """
    conn = getattr(conn, "conn", conn)
    if not conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()[0]:
        return "This server does not ship pg_stat_statements (a contrib module): this part is skipped."
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1").fetchall()
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return ("pg_stat_statements is not in shared_preload_libraries on this server (it needs a restart): "
                "this part is skipped.")
    except psycopg.Error as exc:
        return f"pg_stat_statements cannot be used here ({(exc.diag.message_primary or str(exc)).strip()}): skipped."
    return None


def _dbid(conn: Any) -> int:
    return conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]


def reset_own_statements(conn: Any) -> None:
    """Forget this lesson database's ``pg_stat_statements`` entries, and only those (``reset(0, dbid, 0)``)."""
    conn = getattr(conn, "conn", conn)
    conn.execute("SELECT pg_stat_statements_reset(0, %s, 0)", (_dbid(conn),))


def own_statements(conn: Any) -> list[dict]:
    """This database's SELECTs on the store's tables in ``pg_stat_statements``, most calls first.

    Each: ``calls``, ``rows``, ``total_exec_time`` (ms, execution only: planning is tracked only with
    ``pg_stat_statements.track_planning``, network and client time never), ``query`` (normalised: ``$1``).
    """
    conn = getattr(conn, "conn", conn)
    cur = conn.execute(
        "SELECT calls, rows, total_exec_time, query FROM pg_stat_statements "
        "WHERE dbid = %s AND query LIKE 'SELECT%%' AND query NOT LIKE '%%pg_stat%%' "
        "AND query NOT LIKE '%%pg_database%%' ORDER BY calls DESC, query", (_dbid(conn),))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def statements_evicted(conn: Any) -> int:
    """``pg_stat_statements_info.dealloc``: how many times the server has evicted entries (server-wide, PG 14+)."""
    conn = getattr(conn, "conn", conn)
    return conn.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone()[0]


def own_statements_of(conn: Any, page: Any, tries: int = 3) -> list[dict] | None:
    """Reset this database's entries, run ``page()``, read them back (``own_statements``).

    ``pg_stat_statements`` keeps at most ``pg_stat_statements.max`` shapes for the whole server; when other databases
    fill it, it evicts the least-used entries, possibly one of ours between the reset and the read. If
    ``pg_stat_statements_info.dealloc`` moved meanwhile, the reading is retried, at most ``tries`` times; ``None``
    if every try saw an eviction."""
    for _ in range(tries):
        before = statements_evicted(conn)
        reset_own_statements(conn)
        page()
        rows = own_statements(conn)
        if statements_evicted(conn) == before:
            return rows
    return None


def shape_label(query: str, width: int = 60) -> str:
    """``SELECT ... FROM album WHERE album.artist_id = $1 ...``: the table and the WHERE of a normalised query."""
    import re

    q = " ".join(query.split())
    m = re.search(r"\bFROM (\w+)", q)
    w = re.search(r"\bWHERE (.*?)( ORDER BY| LIMIT|$)", q)
    label = f"SELECT ... FROM {m.group(1) if m else '?'}" + (f" WHERE {w.group(1)}" if w else "")
    return label if len(label) <= width else label[:width - 4] + " ..."


# ---------------------------------------------------------------------------------------------- exercises

CUSTOMER_LIMIT = 50
EXERCISE_LOOP = '''for customer in session.scalars(stmt).unique():
    print(customer.customer_id, len(customer.invoices), sum(i.total for i in customer.invoices))'''


def _expected_totals(conn: psycopg.Connection, limit: int = CUSTOMER_LIMIT) -> list[tuple[int, int, Decimal]]:
    rows = conn.execute(
        "SELECT c.customer_id, count(i.invoice_id), coalesce(sum(i.total), 0) "
        "FROM (SELECT customer_id FROM customer ORDER BY customer_id LIMIT %s) AS c "
        "LEFT JOIN invoice i ON i.customer_id = c.customer_id GROUP BY c.customer_id ORDER BY c.customer_id",
        (limit,)).fetchall()
    return [(int(a), int(b), Decimal(c)) for a, b, c in rows]


def _check_two_statements(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(answer, Select):
        return CheckResult(False, "The answer should be a select(Customer)... statement.")
    engine = engine_for(conn)
    try:
        with count_statements(engine) as log, Session(engine) as session:
            got = invoice_totals(session, answer)
    except SQLAlchemyError as exc:
        return CheckResult(False, f"The loop failed with your statement: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    expected = _expected_totals(conn)
    if got != expected:
        return CheckResult(
            False, f"The loop printed {len(got)} customers, but it should print the first {CUSTOMER_LIMIT} "
                   "by customer_id with all their invoices. Hint: keep .order_by(Customer.customer_id)"
                   f".limit({CUSTOMER_LIMIT}) and only add a loader option.")
    if log.count > 2:
        return CheckResult(
            False, f"The loop issued {log.count} statements ({log.report()}). Hint: tell the query to load "
                   "Customer.invoices for all customers at once: .options(selectinload(Customer.invoices)).")
    return CheckResult(True, f"{log.count} statement{'s' if log.count > 1 else ''} instead of {CUSTOMER_LIMIT + 1}: "
                             f"{log.report()}.")


register(Exercise(
    id="04.at_most_two",
    title="Make this loop issue at most 2 statements",
    prompt=(
        f"With stmt = select(Customer).order_by(Customer.customer_id).limit({CUSTOMER_LIMIT}), the loop\n\n"
        f"{EXERCISE_LOOP}\n\nissues {CUSTOMER_LIMIT + 1} statements. Give a statement `answer` for which the same "
        "loop prints the same lines with at most 2 statements."
    ),
    setup_fn=lambda conn: None,
    checker=_check_two_statements,
    answer_kind=Select,
    answer_hint="a SQLAlchemy statement, select(Customer)...",
    lesson="04_n_plus_one",
))

PREDICT_ARTISTS = 20


def predicted_statements(conn: psycopg.Connection, artists: int = PREDICT_ARTISTS) -> int:
    """What the lazy catalog loop issues for the first ``artists`` artists: 1 + artists + their albums."""
    albums = conn.execute(
        "SELECT count(*) FROM album WHERE artist_id IN "
        "(SELECT artist_id FROM artist ORDER BY artist_id LIMIT %s)", (artists,)).fetchone()[0]
    return 1 + artists + int(albums)


def _check_predict(conn: psycopg.Connection, answer: Any) -> CheckResult:
    expected = predicted_statements(conn)
    if answer == expected:
        return CheckResult(True, f"{expected} statements: 1 for the artists, {PREDICT_ARTISTS} for their albums "
                                 f"(one per artist) and {expected - 1 - PREDICT_ARTISTS} for the tracks "
                                 "(one per album).")
    albums = expected - 1 - PREDICT_ARTISTS
    if answer == 1 + PREDICT_ARTISTS:
        return CheckResult(False, f"{answer:,} counts the artists' SELECT and one per artist for its albums, but "
                                  "the loop also reads each album's tracks lazily: one more statement per album. "
                                  "Count the albums of those artists with SQL.")
    if answer == expected - 1:
        return CheckResult(False, f"{answer:,} is one short: the first SELECT, the one that loads the "
                                  f"{PREDICT_ARTISTS} artists, is a statement too.")
    if answer == 1 + albums:
        return CheckResult(False, f"{answer:,} leaves out the {PREDICT_ARTISTS} statements that load each artist's "
                                  "albums (one per artist).")
    direction = "too high" if answer > expected else "too low"
    return CheckResult(
        False, f"{answer:,} is {direction}. Hint: one SELECT for the artists, one per artist for its albums, and one "
               "per album for its tracks; count the albums of those artists with SQL.")


register(Exercise(
    id="04.predict_count",
    title="Predict the statement count",
    prompt=(
        f"How many statements does the lazy catalog loop issue for the first {PREDICT_ARTISTS} artists "
        f"(stmt = select(Artist).order_by(Artist.artist_id).limit({PREDICT_ARTISTS}))? Work it out with one SQL "
        "query, give it as an int, then verify it with count_statements."
    ),
    setup_fn=lambda conn: None,
    checker=_check_predict,
    answer_kind=int,
    answer_hint="a whole number such as 42",
    lesson="04_n_plus_one",
))


# ---------------------------------------------------------------------------------------------- growth and latency

@dataclass(frozen=True)
class LatencyRun:
    """One variant timed through the latency proxy at one round-trip delay (lesson 04)."""

    delay_ms: float
    run: OrmRun
    proxied_round_trips: float  # client messages the proxy delayed, per run
    trip_s: float = 0.0  # fastest of 15 SELECT 1 through the proxy at this delay: what one round trip really costs

    @property
    def round_trips(self) -> int:
        """Round trips per request as the proxy saw them (client messages it delayed)."""
        return round(self.proxied_round_trips)

    def text(self) -> str:
        return (f"{self.delay_ms:>3g} ms/round trip  {self.run.name:<12} {self.round_trips:>4} round trips  "
                f"{fmt_time(self.run.median)} median (n={len(self.run.times_s)})")


def latency_runs(lesson: Any, delays: tuple[float, ...], variants: dict[str, Callable[[Session], Any]], *,
                 repeat: int = 3, warmup: int = 1, process: bool = True) -> list[LatencyRun]:
    """Time each variant through a :class:`helpers.latency.LatencyProxy` at each delay (lesson 04).

    The engine connects once before timing, so the connection's own start-up round trips are
    not counted; ``proxied_round_trips`` is what the proxy saw per timed run. The proxy runs in a process
    of its own (``process=True``): in the kernel's process its threads would wait for the client's
    interpreter lock and each trip would cost well over the delay. ``trip_s`` is the fastest of 15
    ``SELECT 1`` through the proxy at that delay, measured before the variants (the fastest: like the runs the
    model compares, the least disturbed by other work on a shared machine).
    """
    from sqlalchemy import text

    from helpers.latency import delayed_engine

    out = []
    for delay in delays:
        with delayed_engine(lesson, delay, process=process) as engine:
            with engine.connect() as c:  # open the pooled connection (start-up messages happen here)
                c.execute(text("SELECT 1"))
                trips = []
                for _ in range(15):
                    t0 = time.perf_counter()
                    c.execute(text("SELECT 1")).all()
                    trips.append(time.perf_counter() - t0)
                trip = min(trips)
            for name, fn in variants.items():
                for _ in range(warmup):
                    with Session(engine) as session:
                        fn(session)
                before = engine.proxy.messages_up
                run = time_orm(engine, fn, name=name, repeat=repeat, warmup=0)
                out.append(LatencyRun(delay, run, (engine.proxy.messages_up - before) / repeat, trip))
    return out


@dataclass(frozen=True)
class LatencyModel:
    """Predicted time of one variant at one delay: its time at 0 ms + round trips x (trip cost at D - at 0 ms)."""

    name: str
    delay_ms: float
    round_trips: int
    added_per_trip_s: float
    predicted_s: float
    measured_s: float

    @property
    def ratio(self) -> float:
        return self.measured_s / self.predicted_s


def latency_model(runs: list[LatencyRun]) -> list[LatencyModel]:
    """The model of lesson 04 §6, for every variant and delay > 0, from the runs themselves (fastest runs).

    Base: the variant's fastest run at 0 ms added delay (client work, server work, loopback trips through the proxy).
    Fastest runs, not medians: on a shared machine they are the least disturbed, on both sides of the comparison.
    Each round trip then costs what ``SELECT 1`` measured it costs more at that delay than at 0 ms.
    """
    by = {(r.delay_ms, r.run.name): r for r in runs}
    base_trip = {r.run.name: r.trip_s for r in runs if r.delay_ms == 0}
    out = []
    for r in runs:
        if r.delay_ms == 0 or (0, r.run.name) not in by:
            continue
        zero = by[0, r.run.name]
        added = r.trip_s - base_trip[r.run.name]
        predicted = zero.run.best + r.round_trips * added
        out.append(LatencyModel(r.run.name, r.delay_ms, r.round_trips, added, predicted, r.run.best))
    return out


@dataclass(frozen=True)
class LatencySlope:
    """How one variant's time grows between two delays, per round trip, against what ``SELECT 1`` measured.

    ``per_trip_s`` = (fastest run at ``hi`` - fastest run at ``lo``) / round trips; ``trip_diff_s`` = trip cost at
    ``hi`` - trip cost at ``lo``. The variant's base (client work, server work, loopback) is in both runs and cancels."""

    name: str
    lo_ms: float
    hi_ms: float
    round_trips: int
    per_trip_s: float
    trip_diff_s: float

    @property
    def ratio(self) -> float:
        return self.per_trip_s / self.trip_diff_s


def latency_slope(runs: list[LatencyRun], name: str, lo_ms: float, hi_ms: float) -> LatencySlope:
    """The slope check of lesson 04 §6: time added per round trip between two delays vs the measured trip cost."""
    by = {(r.delay_ms, r.run.name): r for r in runs}
    lo, hi = by[lo_ms, name], by[hi_ms, name]
    per_trip = (hi.run.best - lo.run.best) / hi.round_trips
    return LatencySlope(name, lo_ms, hi_ms, hi.round_trips, per_trip, hi.trip_s - lo.trip_s)


def plot_growth(parents: list[int], series: dict[str, list[float]], title: str,
                ylabel: str = "fastest run: time per request (ms)") -> Any:
    """Display only: time against the number of parents, one line per variant (a matplotlib Figure).

    ``series`` holds each variant's fastest run (``OrmRun.best``), as notebook 04 passes it; say otherwise in
    ``ylabel`` when passing medians."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, times in series.items():
        ax.plot(parents, [t * 1000 for t in times], marker="o", label=name)
    ax.set_xlabel("parents loaded (customers)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_latency(runs: list[LatencyRun]) -> Any:
    """Display only: time against round-trip delay, one line per variant (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    names = list(dict.fromkeys(r.run.name for r in runs))
    for name in names:
        pts = [(r.delay_ms, r.run.median * 1000) for r in runs if r.run.name == name]
        rt = next(r.round_trips for r in runs if r.run.name == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{name} ({rt} round trips)")
    ax.set_xlabel("added delay per round trip (ms)")
    ax.set_ylabel("median time per request (ms)")
    ax.set_title("The same page, further from the database")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig
