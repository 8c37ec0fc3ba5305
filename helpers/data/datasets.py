"""The shipped data, its manifest, and the fast loader that builds the music store (00_start_here).

* :func:`verify_manifest` checks ``datasets/`` against ``datasets/manifest.json`` (rows and SHA-256);
* :func:`load_into` fills an empty database: tables, then every row streamed with ``COPY`` (a producer
  thread formats the next chunk while the main thread sends the current one; CSV, except ``plays`` in
  binary COPY format), then keys, checks and indexes, then ``VACUUM (ANALYZE)``;
* :func:`table_counts` counts the rows of every table.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql as pgsql

from helpers.core.errors import WorkbookError
from helpers.data import generate
from helpers.data.chinook import (CHINOOK_TABLES, DATA_DIR, RESTORE_HINT, chinook_file, manifest_digest,  # noqa: F401
                                  read_chinook, read_manifest, verify_manifest)

SCHEMA_FILE = Path(__file__).resolve().parent / "schema.sql"

#: The scales the generator knows, smallest first (row targets in :data:`helpers.data.generate.SCALES`).
SCALES = ("tiny", "default", "workshop")

# ---------------------------------------------------------------- the schema

def schema_statements() -> tuple[list[str], list[str]]:
    """The statements of ``schema.sql``: (create tables, after the load)."""
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    before, after = text.split("-- @after-load", 1)

    def split(part: str) -> list[str]:
        lines = [ln for ln in part.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]

    return split(before), split(after)


def table_names() -> list[str]:
    """All tables of the music store, in load order."""
    return list(CHINOOK_TABLES) + [t for t in generate.GENERATED_TABLES if t not in CHINOOK_TABLES]


# ---------------------------------------------------------------- loading

Segment = tuple[str, bool, tuple[str, str]]  # (table, has_header, (kind, table)); kind is chinook/generated


def _segments(scale: str, data_dir: Path | None, binary: bool = True) -> list[Segment]:
    """What to COPY, in load order: each Chinook file, then the generated rows of the same table.

    With ``binary``, the tables in :data:`helpers.data.generate.BINARY_TABLES` are sent in binary COPY format.
    """

    segs: list[Segment] = []
    for table in table_names():
        if table in CHINOOK_TABLES:
            segs.append((table, True, ("chinook", table)))
        if table in generate.GENERATED_TABLES:
            kind = "binary" if binary and table in generate.BINARY_TABLES else "generated"
            segs.append((table, False, (kind, table)))
    return segs


def _chunks(source: tuple[str, str], scale: str, data_dir: Path | None) -> Iterator[bytes]:
    """The CSV bytes of one segment: a whole (small) Chinook file, or the generator's chunks."""

    kind, table = source
    if kind == "chinook":
        yield gzip.decompress(chinook_file(table, data_dir).read_bytes())
    elif kind == "binary":
        yield from generate.iter_binary(table, scale)
    else:
        yield from generate.iter_csv(table, scale)


_DONE = object()


class _Producer(threading.Thread):
    """Formats the chunks of every segment, in order, into a small queue (the COPY writer reads it)."""

    def __init__(self, segments, scale: str, data_dir: Path | None, depth: int = 3):
        super().__init__(daemon=True, name="pdw-load-producer")
        self.segments, self.scale, self.data_dir = segments, scale, data_dir
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:

        try:
            for i, (_, header, source) in enumerate(self.segments):
                for chunk in _chunks(source, self.scale, self.data_dir):
                    if source[0] == "binary":  # header and trailer are chunks of their own
                        rows = generate.CHUNK_ROWS if len(chunk) > 32 else 0
                    else:
                        rows = chunk.count(b"\n") - (1 if header else 0)
                    if not self._put((i, chunk, rows)):
                        return
                if not self._put((i, _DONE, 0)):
                    return
        except BaseException as exc:  # handed to the main thread, which raises it
            self._put((-1, exc, 0))


def load_into(conn: psycopg.Connection, scale: str, progress: bool = True, *,
              data_dir: Path | None = None, timings: dict[str, float] | None = None) -> dict[str, int]:
    """Load the music store at ``scale`` into the empty database behind ``conn``; return rows per table.

    Introduced in 00_start_here (``python -m helpers data load --scale ...`` calls it through the template).
    Verifies the shipped files first, then in one transaction creates the tables, streams every row with
    ``COPY`` and adds keys, checks and indexes; then runs ``VACUUM (ANALYZE)`` (statistics for the planner, and
    a visibility map already set, so every lesson copy starts in the same state instead of waiting on
    autovacuum: plans and index-only-scan heap fetches are reproducible). On failure it raises and the
    caller drops the database. ``timings`` (optional) receives seconds per phase: ``copy``, ``constraints``,
    ``vacuum_analyze``, ``total``.
    """
    from tqdm.auto import tqdm

    if scale not in generate.SCALES:
        raise WorkbookError(f"Unknown scale {scale!r}; use one of: {', '.join(generate.SCALES)}.")
    real_rows = verify_manifest(data_dir)
    expected = dict(real_rows)
    for table, n in generate.generated_counts(scale).items():
        expected[table] = expected.get(table, 0) + n
    if not conn.autocommit:
        raise WorkbookError("load_into needs an autocommit connection (helpers.db.connect gives one).")
    existing = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')").fetchone()[0]
    if existing:
        raise WorkbookError(f"Database {conn.info.dbname!r} already has tables; load into a new, empty database.")

    create, after = schema_statements()
    segments = _segments(scale, data_dir)
    t_start = time.perf_counter()
    bar = tqdm(total=sum(expected.values()), unit="rows", unit_scale=True, disable=not progress,
               desc=f"loading {scale}", leave=True)
    producer = _Producer(segments, scale, data_dir)
    try:
        with conn.transaction():
            # A workshop-scale COPY or key can run longer than a lesson's statement_timeout.
            conn.execute("SET LOCAL statement_timeout = 0")
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for stmt in create:
                conn.execute(stmt)
            producer.start()
            with conn.cursor() as cur:
                for i, (table, header, (kind, _)) in enumerate(segments):
                    cols = pgsql.SQL(", ").join(map(pgsql.Identifier, generate.COLUMNS.get(table) or
                                                    _chinook_columns(table, data_dir)))
                    options = "FORMAT binary" if kind == "binary" else "FORMAT csv" + (", HEADER true" if header else "")
                    stmt = pgsql.SQL("COPY {} ({}) FROM STDIN ({})").format(
                        pgsql.Identifier(table), cols, pgsql.SQL(options))
                    with cur.copy(stmt) as copy:
                        while True:
                            seg, chunk, rows = producer.q.get()
                            if seg == -1:
                                raise chunk
                            if chunk is _DONE:
                                break
                            copy.write(chunk)
                            bar.update(min(rows, bar.total - bar.n))
            t_copy = time.perf_counter()
            bar.set_description(f"loading {scale}: keys and indexes")
            for stmt in after:
                conn.execute(stmt)
            t_cons = time.perf_counter()
        bar.set_description(f"loading {scale}: VACUUM (ANALYZE)")
        timeout = conn.execute("SHOW statement_timeout").fetchone()[0]
        conn.execute("SET statement_timeout = 0")
        try:
            conn.execute("VACUUM (ANALYZE)")
        finally:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (timeout,))
        t_end = time.perf_counter()
        counts = table_counts(conn)
        if counts != expected:
            diff = {t: (counts.get(t), expected.get(t)) for t in set(counts) | set(expected)
                    if counts.get(t) != expected.get(t)}
            raise WorkbookError(f"Loaded row counts differ from the expected ones {diff}; {RESTORE_HINT}.")
        bar.set_description(f"loaded {scale}")
    finally:
        producer.stop.set()
        bar.close()
    if timings is not None:
        timings.update(copy=t_copy - t_start, constraints=t_cons - t_copy, vacuum_analyze=t_end - t_cons,
                       total=t_end - t_start)
    return counts


def _chinook_columns(table: str, data_dir: Path | None) -> list[str]:
    with gzip.open(chinook_file(table, data_dir), "rt", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row count of every music-store table present in the database (introduced in 00_start_here)."""
    present = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')").fetchall()}
    out = {}
    for table in table_names():
        if table in present:
            out[table] = conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(table))
                                      ).fetchone()[0]
    return out
