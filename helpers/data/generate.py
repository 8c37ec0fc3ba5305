"""The generated part of the music store, seeded and vectorised (introduced in 00_start_here).

Chinook is small (412 invoices). The lessons need tables big enough that indexes, N+1 and partitioning
are felt, so this module generates, in the same world and with foreign keys into the real Chinook rows:

* more ``customer``, ``invoice`` and ``invoice_line`` rows (ids continue after Chinook's; every invoice's
  ``total`` is the sum of its lines' ``unit_price * quantity``, and a line's price is its track's price);
* ``plays``: the listening log, the big table, with ``played_at`` ascending with ``play_id`` (BRIN) and a
  Zipf-like track popularity (a few tracks get most plays);
* ``reviews``: free text plus a JSONB ``attrs`` column (GIN), a ``status`` where ``'flagged'`` is rare
  (about 0.5 %, partial indexes) and a soft-delete column ``deleted_at`` (about 5 % set);
* ``comments``: attached to a track, an album or a playlist (``commentable_type`` + ``commentable_id``,
  the polymorphic-association lesson).

Rows are produced as CSV bytes in chunks of at most :data:`CHUNK_ROWS` rows, formatted with numpy
(fixed-width byte slots filled from lookup tables, the padding dropped at the end), ready for
``COPY ... FROM STDIN (FORMAT csv)``. No table is ever held as one string.

Determinism: the same seed and scale give byte-identical CSV, so :func:`table_checksums` is stable.
The bytes depend on exactly what :func:`pinned` returns: numpy's version (its random streams are not
promised stable across releases; pinned in ``pyproject.toml``), :data:`GENERATOR_VERSION`, the seed,
:data:`CHUNK_ROWS` (each chunk has its own random stream), the scale's targets and the Chinook files
(checked against ``datasets/manifest.json``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Iterator

import numpy as np

from helpers.data import chinook

GENERATOR_VERSION = 1
SEED = 20_261_125
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Scale:
    """Row targets for one scale; ``customers``, ``invoices`` count the whole table (real + generated)."""

    customers: int
    invoices: int
    invoice_lines: int  # a target: the generator draws 1..6 lines per invoice, mean 3
    plays: int
    reviews: int
    comments: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(500, 10_000, 30_000, 100_000, 2_000, 1_000),
    "default": Scale(5_000, 100_000, 300_000, 1_000_000, 20_000, 10_000),
    "workshop": Scale(50_000, 1_000_000, 3_000_000, 10_000_000, 200_000, 100_000),
}

#: Generated tables in load order; the first three extend Chinook tables of the same name.
GENERATED_TABLES = ("customer", "invoice", "invoice_line", "plays", "reviews", "comments")

#: Column order of the CSV chunks (the Chinook files use the same order for the first three).
COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": ("customer_id", "first_name", "last_name", "company", "address", "city", "state",
                 "country", "postal_code", "phone", "fax", "email", "support_rep_id"),
    "invoice": ("invoice_id", "customer_id", "invoice_date", "billing_address", "billing_city",
                "billing_state", "billing_country", "billing_postal_code", "total"),
    "invoice_line": ("invoice_line_id", "invoice_id", "track_id", "unit_price", "quantity"),
    "plays": ("play_id", "customer_id", "track_id", "played_at", "ms_played", "device", "source"),
    "reviews": ("review_id", "customer_id", "track_id", "rating", "body", "attrs", "status",
                "created_at", "deleted_at"),
    "comments": ("comment_id", "customer_id", "commentable_type", "commentable_id", "body",
                 "created_at"),
}

_TABLE_CODE = {name: i + 1 for i, name in enumerate(GENERATED_TABLES)}


def _epoch(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=timezone.utc).timestamp())


# Time ranges: generated invoices follow Chinook's (2007-2011); the other tables cover recent years.
INVOICE_SPAN = (_epoch(2012, 1, 1), _epoch(2026, 1, 1))
PLAYS_SPAN = (_epoch(2024, 1, 1), _epoch(2026, 1, 1))
REVIEWS_SPAN = (_epoch(2022, 1, 1), _epoch(2026, 1, 1))
COMMENTS_SPAN = (_epoch(2022, 1, 1), _epoch(2026, 1, 1))

# ---------------------------------------------------------------- vocabularies (written for this project)

FIRST_NAMES = ("Ada", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi",
               "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma",
               "Viktor", "Wen", "Ximena", "Yusuf", "Zoë", "Amara", "Bruno", "Carmen", "Diego", "Elif",
               "Felix", "Giulia", "Hanna", "Ivan", "Julia", "Kai", "Lucía", "Marek", "Noor")
FIRST_ASCII = ("ada", "ben", "chloe", "dmitri", "emma", "farid", "grace", "hiro", "ines", "jonas", "kofi",
               "lena", "mateo", "nadia", "oskar", "priya", "quentin", "rosa", "sven", "tariq", "uma",
               "viktor", "wen", "ximena", "yusuf", "zoe", "amara", "bruno", "carmen", "diego", "elif",
               "felix", "giulia", "hanna", "ivan", "julia", "kai", "lucia", "marek", "noor")
LAST_NAMES = ("Silva", "Müller", "Kowalski", "Nakamura", "Okafor", "Haddad", "Johansson", "Rossi", "García",
              "Novák", "Dubois", "Chen", "Patel", "Ivanova", "O'Brien", "Andersen", "Costa", "Yilmaz",
              "Schmidt", "Moreau", "Kim", "Nguyen", "Fischer", "Lopez", "Berg", "Santos", "Horvat",
              "Larsen", "Mendes", "Petrov")
LAST_ASCII = ("silva", "muller", "kowalski", "nakamura", "okafor", "haddad", "johansson", "rossi", "garcia",
              "novak", "dubois", "chen", "patel", "ivanova", "obrien", "andersen", "costa", "yilmaz",
              "schmidt", "moreau", "kim", "nguyen", "fischer", "lopez", "berg", "santos", "horvat",
              "larsen", "mendes", "petrov")
STREETS = ("Main Street", "Station Road", "Harbour Lane", "Elm Avenue", "Mill Road", "Church Street",
           "Park Avenue", "Riverside", "King Street", "Market Square", "Orchard Way", "Hill Road")
COMPANIES = ("Acme Audio Ltd", "Bluebird Media", "Northwind Sound", "Vinyl & Co", "Echo Labs",
             "Quiet Room Studios", "Crescendo Inc", "Tempo Works")
DEVICES = ("mobile", "desktop", "web", "tablet", "smart_speaker", "car")
DEVICE_P = (0.52, 0.18, 0.12, 0.08, 0.06, 0.04)
SOURCES = ("search", "playlist", "album", "radio", "recommendation", "library")
SOURCE_P = (0.15, 0.30, 0.20, 0.10, 0.15, 0.10)
STATUSES = ("published", "pending", "flagged")
STATUS_P = (0.925, 0.07, 0.005)
COMMENTABLE = ("track", "album", "playlist")
COMMENTABLE_P = (0.7, 0.2, 0.1)
OPENERS = {  # by rating
    1: ("Could not finish it", "Not for me", "Really disappointing", "Skipped after a minute"),
    2: ("Weaker than I hoped", "Some good moments", "Not their best", "It drags"),
    3: ("Decent enough", "Fine for the background", "Mixed feelings", "Okay on a second listen"),
    4: ("Really enjoyed this", "Solid track", "Grew on me", "Great for the commute"),
    5: ("Absolute favourite", "On repeat all week", "A masterpiece", "Goosebumps every time"),
}
COMMENT_OPENERS = ("Who else is here in", "Saw this live in", "Found this through a friend in",
                   "First heard it on the radio in", "Still listening in", "Added to my list in")
WORDS = ("guitar", "vocals", "drums", "bass", "chorus", "melody", "lyrics", "solo", "mix", "live", "studio",
         "remaster", "acoustic", "energy", "rhythm", "production", "intro", "bridge", "tempo", "groove",
         "harmony", "piano", "strings", "brass", "riff", "beat", "voice", "sound", "album", "version",
         "classic", "favourite", "late", "night", "summer", "road", "trip", "workout", "morning", "rain",
         "dance", "quiet", "loud", "raw", "smooth", "dark", "bright", "heavy", "soft", "catchy", "long",
         "short", "perfect", "underrated", "overplayed", "nostalgic", "fresh", "timeless", "haunting",
         "uplifting", "sad", "happy", "crisp", "muddy", "balanced", "vinyl", "headphones", "speakers",
         "concert", "encore", "crowd", "fade", "cover", "original", "demo", "bootleg", "orchestra",
         "saxophone", "violin", "synth", "falsetto", "harmonica", "banjo", "cello", "choir", "reverb",
         "distortion", "feedback", "mellow", "epic", "gentle", "wild", "tight", "loose", "slow", "fast")
TAGS = ("live", "remaster", "acoustic", "cover", "explicit", "instrumental", "duet", "edit")
LANGS = ("en", "pt", "de", "fr", "es")
LANG_P = (0.6, 0.12, 0.1, 0.1, 0.08)


def pinned(scale: str, seed: int = SEED) -> dict[str, object]:
    """Everything the generated bytes depend on (compare it when a checksum changes)."""
    return {"numpy": np.__version__, "generator_version": GENERATOR_VERSION, "seed": seed,
            "chunk_rows": CHUNK_ROWS, "scale": scale, "targets": SCALES[_check_scale(scale)].__dict__,
            "chinook_manifest_sha256": chinook.manifest_digest()}


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        from helpers.core.errors import WorkbookError
        raise WorkbookError(f"Unknown scale {scale!r}; use one of: {', '.join(SCALES)}.")
    return scale


def _rng(seed: int, table: str, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _TABLE_CODE[table], part])))


# ---------------------------------------------------------------- vectorised CSV formatting
# A column is a (rows, width) uint8 array; byte 0 is padding and is removed once per chunk.

def _csv_quote(text: str) -> str:
    if text == "":
        raise ValueError("empty strings would read back as NULL")
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _table(strings: tuple[str, ...] | list[str], quote: bool = True) -> np.ndarray:
    """Lookup table of encoded strings, one row each, zero-padded to the longest."""
    enc = [(_csv_quote(s) if quote else s).encode("utf-8") for s in strings]
    width = max(1, max(len(e) for e in enc))
    out = np.zeros((len(enc), width), dtype=np.uint8)
    for i, e in enumerate(enc):
        out[i, :len(e)] = np.frombuffer(e, dtype=np.uint8)
    return out


def _const(text: str, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode("utf-8"), dtype=np.uint8), (n, len(text.encode())))


def _digits(values: np.ndarray, width: int, strip: bool) -> np.ndarray:
    """Decimal digits of non-negative integers, right-aligned in ``width`` slots; leading zeros dropped if ``strip``.

    One division by the scalar 10 per digit position, in int32 when the values fit (several times faster
    than dividing by a broadcast array of powers of ten).
    """
    values = np.asarray(values)
    top = int(values.max()) if values.size else 0
    v = values.astype(np.int32 if top < 2**31 else np.int64)
    out = np.empty((len(v), width), dtype=np.uint8)
    for j in range(width - 1, -1, -1):
        q = v // 10
        d = (v - q * 10 + 48).astype(np.uint8)
        if strip and j < width - 1:
            d[v == 0] = 0
        out[:, j] = d
        v = q
    return out


def _int_col(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as decimal digits, leading zeros dropped."""
    values = np.asarray(values)
    top = int(values.max()) if values.size else 0
    return _digits(values, len(str(top)), strip=True)


def _fixed_digits(values: np.ndarray, width: int) -> np.ndarray:
    return _digits(values, width, strip=False)


def _money_col(cents: np.ndarray) -> np.ndarray:
    cents = np.asarray(cents, dtype=np.int64)
    return np.hstack([_int_col(cents // 100), _const(".", len(cents)), _fixed_digits(cents % 100, 2)])


def _civil_dates(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as ``YYYY-MM-DD`` (proleptic Gregorian, integer maths only)."""
    z = days.astype(np.int64) + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    n = len(days)
    return np.hstack([_fixed_digits(year, 4), _const("-", n), _fixed_digits(month, 2), _const("-", n),
                      _fixed_digits(day, 2)])


@lru_cache(maxsize=1)
def _clock_table() -> np.ndarray:
    """``HH:MM:SS`` for every second of a day (86,400 x 8 bytes), so times are one lookup."""
    sod = np.arange(86_400)
    n = len(sod)
    return np.hstack([_fixed_digits(sod // 3600, 2), _const(":", n), _fixed_digits(sod // 60 % 60, 2),
                      _const(":", n), _fixed_digits(sod % 60, 2)])


def _ts_col(seconds: np.ndarray, with_zone: bool = True) -> np.ndarray:
    """Epoch seconds (UTC) as ``YYYY-MM-DD HH:MM:SS`` (+ ``+00`` for timestamptz): two table lookups."""
    seconds = np.asarray(seconds, dtype=np.int64)
    n = len(seconds)
    out = np.empty((n, 22 if with_zone else 19), dtype=np.uint8)
    if n == 0:
        return out
    days, sod = np.divmod(seconds, 86_400)
    first = int(days.min())
    out[:, :10] = _civil_dates(np.arange(first, int(days.max()) + 1))[days - first]
    out[:, 10] = 32
    out[:, 11:19] = _clock_table()[sod]
    if with_zone:
        out[:, 19:22] = np.frombuffer(b"+00", dtype=np.uint8)
    return out


def _null_where(col: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An empty unquoted field (NULL in COPY CSV) where ``mask`` is true."""
    col = np.array(col, copy=True)
    col[mask] = 0
    return col


def _rows_to_csv(columns: list[np.ndarray]) -> bytes:
    n = columns[0].shape[0]
    widths = [c.shape[1] for c in columns]
    out = np.empty((n, sum(widths) + len(columns)), dtype=np.uint8)
    pos = 0
    for i, (col, w) in enumerate(zip(columns, widths)):
        out[:, pos:pos + w] = col
        pos += w
        out[:, pos] = 10 if i == len(columns) - 1 else 44  # newline or comma
        pos += 1
    return out.tobytes().translate(None, b"\0")  # drop the padding: a C loop over the bytes


def _weighted(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with the probabilities whose cumulative sum is ``cdf``."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _cdf(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    c = np.cumsum(p / p.sum())
    c[-1] = 1.0
    return c


def _words(rng: np.random.Generator, n: int, low: int, high: int, word_cdf: np.ndarray,
           table: np.ndarray) -> np.ndarray:
    """``n`` runs of ``low..high`` space-led words from ``table`` (rows past each run's length are blank)."""
    lengths = rng.integers(low, high + 1, size=n)
    idx = _weighted(rng, word_cdf, n * high).reshape(n, high)
    slots = table[idx]  # (n, high, width)
    slots[np.arange(high)[None, :] >= lengths[:, None]] = 0
    return slots.reshape(n, -1)


# ---------------------------------------------------------------- the real rows the generator builds on

@dataclass(frozen=True)
class _World:
    track_price_cents: np.ndarray  # index = track_id - 1
    track_ms: np.ndarray
    popularity_cdf: np.ndarray  # over track index, Zipf-like, for plays
    purchase_cdf: np.ndarray  # milder skew, for invoice lines
    n_albums: int
    n_playlists: int
    n_real_customers: int
    n_real_invoices: int
    n_real_lines: int
    last_real_invoice: int
    geo_rows: list[dict[str, str | None]]  # the real customers' city/state/country/postal_code


@lru_cache(maxsize=4)
def _world(seed: int) -> _World:
    tracks = chinook.read_chinook("track")
    price = np.array([round(float(r["unit_price"]) * 100) for r in tracks], dtype=np.int64)
    ms = np.array([int(r["milliseconds"]) for r in tracks], dtype=np.int64)
    n = len(tracks)
    rng = _rng(seed, "plays", 1_000_000)  # a stream of its own: which tracks are the hits
    rank = rng.permutation(n)  # rank[i] = popularity rank of track i
    plays_w = 1.0 / (rank + 1.0) ** 1.1
    buy_w = 1.0 / (rank + 1.0) ** 0.7
    customers = chinook.read_chinook("customer")
    geo = [{k: r[k] for k in ("city", "state", "country", "postal_code")} for r in customers]
    invoices = chinook.read_chinook("invoice")
    return _World(price, ms, _cdf(plays_w), _cdf(buy_w), len(chinook.read_chinook("album")),
                  len(chinook.read_chinook("playlist")), len(customers), len(invoices),
                  len(chinook.read_chinook("invoice_line")), max(int(r["invoice_id"]) for r in invoices), geo)


def _customer_weights_cdf(seed: int, n_customers: int) -> np.ndarray:
    """Activity per customer: log-normal, so some customers buy and listen far more than others."""
    rng = _rng(seed, "customer", 1_000_000)
    return _cdf(rng.lognormal(0.0, 1.0, size=n_customers))


# ---------------------------------------------------------------- customers

@lru_cache(maxsize=4)
def _customer_arrays(scale: str, seed: int) -> dict[str, np.ndarray]:
    w = _world(seed)
    n = SCALES[scale].customers - w.n_real_customers
    rng = _rng(seed, "customer", 0)
    return {
        "id": np.arange(w.n_real_customers + 1, w.n_real_customers + 1 + n, dtype=np.int64),
        "first": rng.integers(0, len(FIRST_NAMES), n),
        "last": rng.integers(0, len(LAST_NAMES), n),
        "company": np.where(rng.random(n) < 0.15, rng.integers(0, len(COMPANIES), n), -1),
        "house": rng.integers(1, 400, n),
        "street": rng.integers(0, len(STREETS), n),
        "geo": rng.integers(0, len(w.geo_rows), n),
        "phone": rng.integers(10**9, 10**10, n),
        "rep": rng.integers(3, 6, n),  # Chinook's three sales support agents (employees 3-5)
    }


def _geo_tables(w: _World) -> dict[str, np.ndarray]:
    return {k: _table([g[k] or "\x00" for g in w.geo_rows]) for k in ("city", "state", "country", "postal_code")}


def _address_cols(c: dict[str, np.ndarray], idx: np.ndarray, geo_tables: dict[str, np.ndarray]) -> list[np.ndarray]:
    """address, city, state, country, postal_code of generated customers ``idx`` (positions in ``c``)."""
    house, street, geo = c["house"][idx], c["street"][idx], c["geo"][idx]
    address = np.hstack([_int_col(house), _const(" ", len(idx)), _table(STREETS)[street]])
    return [address] + [geo_tables[k][geo] for k in ("city", "state", "country", "postal_code")]


def _customer_chunks(scale: str, seed: int) -> Iterator[bytes]:
    c = _customer_arrays(scale, seed)
    geo_tables = _geo_tables(_world(seed))
    n = len(c["id"])
    for start in range(0, n, CHUNK_ROWS):
        idx = np.arange(start, min(n, start + CHUNK_ROWS))
        m = len(idx)
        first, last, ids = c["first"][idx], c["last"][idx], c["id"][idx]
        email = np.hstack([_table(FIRST_ASCII)[first], _const(".", m), _table(LAST_ASCII)[last],
                           _int_col(ids), _const("@example.com", m)])
        company = _null_where(_table(COMPANIES)[np.maximum(c["company"][idx], 0)], c["company"][idx] < 0)
        phone = np.hstack([_const("+", m), _int_col(c["phone"][idx])])
        yield _rows_to_csv([_int_col(ids), _table(FIRST_NAMES)[first], _table(LAST_NAMES)[last], company,
                            *_address_cols(c, idx, geo_tables), phone, np.zeros((m, 1), np.uint8), email,
                            _int_col(c["rep"][idx])])


# ---------------------------------------------------------------- invoices and their lines

@lru_cache(maxsize=4)
def _line_counts(scale: str, seed: int) -> np.ndarray:
    """Lines per generated invoice (1..6, mean about 3), drawn up front so line ids are known per chunk."""
    w = _world(seed)
    n = SCALES[scale].invoices - w.n_real_invoices
    rng = _rng(seed, "invoice_line", 0)
    return _weighted(rng, _cdf([0.2, 0.25, 0.2, 0.15, 0.12, 0.08]), n) + 1


def _invoice_chunk(scale: str, seed: int, k: int) -> dict[str, np.ndarray]:
    """Numbers for generated invoices ``k*CHUNK_ROWS ...`` and all their lines (shared by both tables)."""
    w = _world(seed)
    counts = _line_counts(scale, seed)
    n_total = len(counts)
    start, stop = k * CHUNK_ROWS, min(n_total, (k + 1) * CHUNK_ROWS)
    n = stop - start
    rng = _rng(seed, "invoice", k)
    n_customers = SCALES[scale].customers
    customer = _weighted(rng, _customer_weights_cdf(seed, n_customers), n) + 1
    t0, t1 = INVOICE_SPAN
    pos = start + np.sort(rng.random(n)) * n
    when = t0 + (pos * ((t1 - t0) / n_total)).astype(np.int64)
    cnt = counts[start:stop]
    n_lines = int(cnt.sum())
    track = _weighted(rng, w.purchase_cdf, n_lines)
    qty = _weighted(rng, _cdf([0.9, 0.08, 0.02]), n_lines) + 1
    price = w.track_price_cents[track]
    offsets = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    total = np.add.reduceat(price * qty, offsets) if n_lines else np.zeros(0, np.int64)
    first_line = w.n_real_lines + int(counts[:start].sum()) + 1
    invoice_id = np.arange(w.last_real_invoice + 1 + start, w.last_real_invoice + 1 + stop, dtype=np.int64)
    return {"invoice_id": invoice_id, "customer": customer, "when": when, "total": total,
            "line_id": np.arange(first_line, first_line + n_lines, dtype=np.int64),
            "line_invoice": np.repeat(invoice_id, cnt), "track_id": track + 1, "price": price, "qty": qty}


def _invoice_chunks(scale: str, seed: int) -> Iterator[bytes]:
    w = _world(seed)
    c = _customer_arrays(scale, seed)
    geo_tables = _geo_tables(w)
    real = chinook.read_chinook("customer")
    real_tables = {k: _table([r[k] or "\x00" for r in real])
                   for k in ("address", "city", "state", "country", "postal_code")}
    n_chunks = -(-len(_line_counts(scale, seed)) // CHUNK_ROWS)
    for k in range(n_chunks):
        d = _invoice_chunk(scale, seed, k)
        m = len(d["invoice_id"])
        cust = d["customer"]
        is_real = cust <= w.n_real_customers
        # Billing address = the customer's address: real customers from Chinook, generated ones composed.
        gen_idx = np.where(is_real, 0, cust - w.n_real_customers - 1)
        gen_cols = _address_cols(c, gen_idx, geo_tables) if len(c["id"]) else None
        billing = []
        for j, key in enumerate(("address", "city", "state", "country", "postal_code")):
            real_col = _null_where(real_tables[key][np.where(is_real, cust - 1, 0)], ~is_real)
            parts = [real_col]
            if gen_cols is not None:
                parts.append(_null_where(gen_cols[j], is_real))
            billing.append(np.hstack(parts))
        yield _rows_to_csv([_int_col(d["invoice_id"]), _int_col(cust), _ts_col(d["when"], with_zone=False),
                            *billing, _money_col(d["total"])])


def _invoice_line_chunks(scale: str, seed: int) -> Iterator[bytes]:
    n_chunks = -(-len(_line_counts(scale, seed)) // CHUNK_ROWS)
    for k in range(n_chunks):
        d = _invoice_chunk(scale, seed, k)
        for s in range(0, len(d["line_id"]), CHUNK_ROWS):
            sl = slice(s, s + CHUNK_ROWS)
            yield _rows_to_csv([_int_col(d["line_id"][sl]), _int_col(d["line_invoice"][sl]),
                                _int_col(d["track_id"][sl]), _money_col(d["price"][sl]),
                                _int_col(d["qty"][sl])])


# ---------------------------------------------------------------- plays

def _plays_numbers(scale: str, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """The plays, chunk by chunk, as arrays (shared by the CSV and the binary COPY formatters)."""
    w = _world(seed)
    total = SCALES[scale].plays
    cust_cdf = _customer_weights_cdf(seed, SCALES[scale].customers)
    t0, t1 = PLAYS_SPAN
    step = (t1 - t0) / total
    dev_cdf, src_cdf = _cdf(DEVICE_P), _cdf(SOURCE_P)
    for k, start in enumerate(range(0, total, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, total - start)
        rng = _rng(seed, "plays", k)
        track = _weighted(rng, w.popularity_cdf, n)
        full = rng.random(n) < 0.6
        frac = np.where(full, 1.0, rng.uniform(0.05, 1.0, n))
        ms = np.maximum(1, (w.track_ms[track] * frac).astype(np.int64))
        when = t0 + ((start + np.sort(rng.random(n)) * n) * step).astype(np.int64)
        customer = _weighted(rng, cust_cdf, n) + 1  # the draws stay in this order: it fixes the bytes
        device = _weighted(rng, dev_cdf, n)
        source = _weighted(rng, src_cdf, n)
        yield {"play_id": np.arange(start + 1, start + n + 1), "customer_id": customer, "track_id": track + 1,
               "played_at": when, "ms_played": ms, "device": device, "source": source}


def _plays_chunks(scale: str, seed: int) -> Iterator[bytes]:
    dev_t, src_t = _table(DEVICES), _table(SOURCES)
    for d in _plays_numbers(scale, seed):
        yield _rows_to_csv([_int_col(d["play_id"]), _int_col(d["customer_id"]), _int_col(d["track_id"]),
                            _ts_col(d["played_at"]), _int_col(d["ms_played"]), dev_t[d["device"]],
                            src_t[d["source"]]])


# PostgreSQL's binary COPY format: a signature, flags and header-extension length, then per row a field count
# and (length, value) per field in network byte order, then -1. Timestamps are microseconds since 2000-01-01.
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH = _epoch(2000, 1, 1)


def _text_field(values: tuple[str, ...], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, mask) of a text field: 4-byte length then the UTF-8 bytes, padded to the longest value."""
    enc = [v.encode("utf-8") for v in values]
    width = max(len(e) for e in enc)
    table = np.zeros((len(enc), 4 + width), dtype=np.uint8)
    valid = np.zeros((len(enc), 4 + width), dtype=bool)
    for i, e in enumerate(enc):
        table[i, :4] = np.frombuffer(len(e).to_bytes(4, "big"), dtype=np.uint8)
        table[i, 4:4 + len(e)] = np.frombuffer(e, dtype=np.uint8)
        valid[i, :4 + len(e)] = True
    return table[idx], valid[idx]


def _plays_binary(scale: str, seed: int) -> Iterator[bytes]:
    """The same plays as :func:`_plays_chunks`, in binary COPY format (no number or date parsing on the server)."""
    fixed = np.dtype([("nfields", ">i2"), ("l1", ">i4"), ("play_id", ">i8"), ("l2", ">i4"), ("customer_id", ">i4"),
                      ("l3", ">i4"), ("track_id", ">i4"), ("l4", ">i4"), ("played_at", ">i8"),
                      ("l5", ">i4"), ("ms_played", ">i4")])
    yield _PGCOPY_HEADER
    for d in _plays_numbers(scale, seed):
        n = len(d["play_id"])
        head = np.empty(n, dtype=fixed)
        head["nfields"], head["l1"], head["l2"], head["l3"], head["l4"], head["l5"] = 7, 8, 4, 4, 8, 4
        head["play_id"], head["customer_id"], head["track_id"] = d["play_id"], d["customer_id"], d["track_id"]
        head["played_at"] = (d["played_at"] - _PG_EPOCH) * 1_000_000
        head["ms_played"] = d["ms_played"]
        dev, dev_ok = _text_field(DEVICES, d["device"])
        src, src_ok = _text_field(SOURCES, d["source"])
        rows = np.hstack([head.view(np.uint8).reshape(n, fixed.itemsize), dev, src])
        keep = np.hstack([np.ones((n, fixed.itemsize), dtype=bool), dev_ok, src_ok])
        yield rows[keep].tobytes()
    yield _PGCOPY_TRAILER


# ---------------------------------------------------------------- reviews

def _word_cdf() -> np.ndarray:
    return _cdf(1.0 / np.arange(1, len(WORDS) + 1) ** 0.9)  # some words common, some rare (full-text search)


def _reviews_chunks(scale: str, seed: int) -> Iterator[bytes]:
    w = _world(seed)
    target = SCALES[scale].reviews
    n_customers = SCALES[scale].customers
    rng = _rng(seed, "reviews", 0)
    # One review per (customer, track): oversample, keep first occurrences, trim to the target.
    draw = int(target * 1.2) + 100
    cust = _weighted(rng, _customer_weights_cdf(seed, n_customers), draw)
    track = _weighted(rng, w.purchase_cdf, draw)
    _, first = np.unique(cust * len(w.track_ms) + track, return_index=True)
    keep = np.sort(first)[:target]
    cust, track = cust[keep] + 1, track[keep] + 1
    n = len(keep)
    rating = _weighted(rng, _cdf([0.06, 0.08, 0.16, 0.32, 0.38]), n) + 1
    opener = rng.integers(0, 4, n)
    t0, t1 = REVIEWS_SPAN
    created = t0 + (np.sort(rng.random(n)) * (t1 - t0)).astype(np.int64)
    deleted = rng.random(n) < 0.05
    deleted_at = created + rng.integers(3_600, 90 * 86_400, n)
    status = _weighted(rng, _cdf(STATUS_P), n)
    device = _weighted(rng, _cdf(DEVICE_P), n)
    verified = rng.random(n) < 0.7
    listens = rng.integers(1, 500, n)
    has_tags = rng.random(n) < 0.35
    tag_a = rng.integers(0, len(TAGS), n)
    tag_b = rng.integers(0, len(TAGS), n)
    two_tags = (rng.random(n) < 0.4) & (tag_b != tag_a)
    has_lang = rng.random(n) < 0.8
    lang = _weighted(rng, _cdf(LANG_P), n)
    edited = rng.random(n) < 0.03
    word_seed = int(rng.integers(0, 2**31))  # a sub-seed: body words are drawn per chunk below

    openers = _table([f'"{OPENERS[r][i]}' for r in range(1, 6) for i in range(4)], quote=False)
    word_t = _table([" " + x for x in WORDS], quote=False)
    wcdf = _word_cdf()
    # attrs: JSON written with CSV quote doubling; the field as a whole is quoted.
    dev_t = _table([f'"{{""device"": ""{d}""' for d in DEVICES], quote=False)
    ver_t = _table([', ""verified"": false', ', ""verified"": true'], quote=False)
    tag1_t = _table([f', ""tags"": [""{t}""' for t in TAGS], quote=False)
    tag2_t = _table([f', ""{t}""' for t in TAGS], quote=False)
    lang_t = _table([f', ""lang"": ""{x}""' for x in LANGS], quote=False)
    status_t = _table(STATUSES)
    for s in range(0, n, CHUNK_ROWS):
        sl = slice(s, min(n, s + CHUNK_ROWS))
        m = sl.stop - sl.start
        wrng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, word_seed, s])))
        body = np.hstack([openers[(rating[sl] - 1) * 4 + opener[sl]], _const(":", m),
                          _words(wrng, m, 3, 24, wcdf, word_t), _const('."', m)])
        attrs = np.hstack([
            dev_t[device[sl]], ver_t[verified[sl].astype(np.int64)],
            _const(', ""listens"": ', m), _int_col(listens[sl]),
            _null_where(tag1_t[tag_a[sl]], ~has_tags[sl]),
            _null_where(tag2_t[tag_b[sl]], ~(has_tags[sl] & two_tags[sl])),
            _null_where(_const("]", m), ~has_tags[sl]),
            _null_where(lang_t[lang[sl]], ~has_lang[sl]),
            _null_where(_const(', ""edited"": true', m), ~edited[sl]),
            _const('}"', m)])
        yield _rows_to_csv([
            _int_col(np.arange(sl.start + 1, sl.stop + 1)), _int_col(cust[sl]), _int_col(track[sl]),
            _int_col(rating[sl]), body, attrs, status_t[status[sl]], _ts_col(created[sl]),
            _null_where(_ts_col(deleted_at[sl]), ~deleted[sl])])


# ---------------------------------------------------------------- comments

def _comments_chunks(scale: str, seed: int) -> Iterator[bytes]:
    w = _world(seed)
    n = SCALES[scale].comments
    rng = _rng(seed, "comments", 0)
    kind = _weighted(rng, _cdf(COMMENTABLE_P), n)
    target_id = np.select(
        [kind == 0, kind == 1],
        [_weighted(rng, w.popularity_cdf, n) + 1, rng.integers(1, w.n_albums + 1, n)],
        rng.integers(1, w.n_playlists + 1, n))
    cust = _weighted(rng, _customer_weights_cdf(seed, SCALES[scale].customers), n) + 1
    t0, t1 = COMMENTS_SPAN
    created = t0 + (np.sort(rng.random(n)) * (t1 - t0)).astype(np.int64)
    year = 1970 + created // 31_556_952  # only for the text; an approximate year is fine here
    opener = rng.integers(0, len(COMMENT_OPENERS), n)
    word_seed = int(rng.integers(0, 2**31))
    opener_t = _table(['"' + o + " " for o in COMMENT_OPENERS], quote=False)
    word_t = _table([" " + x for x in WORDS], quote=False)
    kind_t = _table(COMMENTABLE)
    wcdf = _word_cdf()
    for s in range(0, n, CHUNK_ROWS):
        sl = slice(s, min(n, s + CHUNK_ROWS))
        m = sl.stop - sl.start
        wrng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, word_seed, s])))
        body = np.hstack([opener_t[opener[sl]], _int_col(year[sl]), _const("?", m),
                          _words(wrng, m, 2, 16, wcdf, word_t), _const('."', m)])
        yield _rows_to_csv([_int_col(np.arange(sl.start + 1, sl.stop + 1)), _int_col(cust[sl]),
                            kind_t[kind[sl]], _int_col(target_id[sl]), body, _ts_col(created[sl])])


# ---------------------------------------------------------------- public API

_PRODUCERS = {"customer": _customer_chunks, "invoice": _invoice_chunks, "invoice_line": _invoice_line_chunks,
              "plays": _plays_chunks, "reviews": _reviews_chunks, "comments": _comments_chunks}


def iter_csv(table: str, scale: str, seed: int = SEED) -> Iterator[bytes]:
    """The generated rows of ``table`` as CSV chunks (no header, columns as in :data:`COLUMNS`).

    Introduced in 00_start_here. For ``customer``, ``invoice`` and ``invoice_line`` these are the rows
    *after* Chinook's; the other tables are generated whole.
    """
    _check_scale(scale)
    if table not in _PRODUCERS:
        raise ValueError(f"{table!r} is not a generated table ({', '.join(GENERATED_TABLES)})")
    yield from _PRODUCERS[table](scale, seed)


#: Tables the loader sends in PostgreSQL's binary COPY format (the big, all-numeric-and-timestamp one).
BINARY_TABLES = ("plays",)


def iter_binary(table: str, scale: str, seed: int = SEED) -> Iterator[bytes]:
    """The generated rows of ``table`` in binary COPY format, header and trailer included (00_start_here).

    The same values as :func:`iter_csv` (a test loads both and compares); the server skips parsing text,
    which is what makes the loader as fast as ``psql``'s ``\\copy`` of a ready CSV file, or faster.
    """
    _check_scale(scale)
    if table not in BINARY_TABLES:
        raise ValueError(f"{table!r} has no binary formatter ({', '.join(BINARY_TABLES)})")
    yield from _plays_binary(scale, seed)


def generated_counts(scale: str, seed: int = SEED) -> dict[str, int]:
    """Exact number of generated rows per table (without Chinook's), computed without formatting."""
    _check_scale(scale)
    w = _world(seed)
    t = SCALES[scale]
    target = t.reviews
    rng = _rng(seed, "reviews", 0)
    draw = int(target * 1.2) + 100
    cust = _weighted(rng, _customer_weights_cdf(seed, t.customers), draw)
    track = _weighted(rng, w.purchase_cdf, draw)
    n_reviews = min(target, len(np.unique(cust * len(w.track_ms) + track)))
    return {"customer": t.customers - w.n_real_customers, "invoice": t.invoices - w.n_real_invoices,
            "invoice_line": int(_line_counts(scale, seed).sum()), "plays": t.plays, "reviews": n_reviews,
            "comments": t.comments}


def table_checksums(scale: str, seed: int = SEED) -> dict[str, str]:
    """SHA-256 of each generated table's CSV bytes: equal on every run and machine for the pinned versions."""
    out = {}
    for table in GENERATED_TABLES:
        digest = hashlib.sha256()
        for chunk in iter_csv(table, scale, seed):
            digest.update(chunk)
        out[table] = digest.hexdigest()
    return out
