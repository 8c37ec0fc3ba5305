"""The generator: determinism, the shapes the lessons rely on, and internal consistency (no database)."""
from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from helpers.data import datasets, generate

# Computed once from this implementation (numpy 2.4.6, GENERATOR_VERSION 1, CHUNK_ROWS 100_000, the shipped
# Chinook files). A change means the data every notebook's stored outputs were made with has changed: if that
# is intended, bump GENERATOR_VERSION, update these, and re-run the notebooks.
TINY_SHA256 = {
    "customer": "dd4ce61df84fac1cbaa24ca7ac00f995b8975e6053a867a7715b249fea026526",
    "invoice": "afa698f6c0e9f9134e7e995986334fd88daac5be8e254c24dd5b001f6ddf7ff5",
    "invoice_line": "04fb157512c67feaa6af62bb4dc876329e824156579310b1adadbd84ee1f41f0",
    "plays": "69cfd0e7358a3082a8836d87936cd93d59fb87f4aedbc05d9505ea28a6cb9ce3",
    "reviews": "afafd77cbdca1998eb2ffcbabb4eb013153a810068c602358166d5cb5b48b390",
    "comments": "2132f852aacc2c403d9a1a644c02de532a0ffe720f82d89afe73f2825b8f38d5",
}


def rows(table: str, scale: str = "tiny") -> list[list[str]]:
    text = b"".join(generate.iter_csv(table, scale)).decode("utf-8")
    return list(csv.reader(io.StringIO(text)))


def test_numpy_is_the_pinned_version():
    # The random streams behind TINY_SHA256 are only promised stable within one numpy release.
    assert np.__version__ == "2.4.6", "pyproject.toml pins numpy==2.4.6; the checksums depend on it"


def test_tiny_checksums_are_the_recorded_ones():
    assert generate.table_checksums("tiny") == TINY_SHA256


def test_same_seed_same_bytes_other_seed_other_bytes():
    again = generate.table_checksums("tiny")
    assert again == generate.table_checksums("tiny")
    other = generate.table_checksums("tiny", seed=generate.SEED + 1)
    assert all(other[t] != again[t] for t in generate.GENERATED_TABLES)


def test_pinned_names_everything_the_bytes_depend_on():
    pins = generate.pinned("tiny")
    assert pins["numpy"] == np.__version__
    assert pins["chinook_manifest_sha256"] == datasets.manifest_digest()
    assert {"generator_version", "seed", "chunk_rows", "targets"} <= set(pins)


def test_counts_match_the_rows_and_the_targets():
    counts = generate.generated_counts("tiny")
    real = datasets.verify_manifest()
    for table in generate.GENERATED_TABLES:
        assert len(rows(table)) == counts[table], table
    target = generate.SCALES["tiny"]
    assert counts["customer"] + real["customer"] == target.customers
    assert counts["invoice"] + real["invoice"] == target.invoices
    assert 0.9 * target.invoice_lines < counts["invoice_line"] + real["invoice_line"] < 1.1 * target.invoice_lines
    assert counts["plays"] == target.plays and counts["comments"] == target.comments
    assert counts["reviews"] == target.reviews


def test_scales_grow_tenfold():
    tiny, default = generate.SCALES["tiny"], generate.SCALES["default"]
    workshop = generate.SCALES["workshop"]
    for field in ("customers", "invoices", "plays", "reviews", "comments"):
        assert getattr(default, field) == 10 * getattr(tiny, field)
        assert getattr(workshop, field) == 10 * getattr(default, field)


def test_ids_continue_after_chinook_and_foreign_keys_point_at_real_rows():
    real = datasets.verify_manifest()
    customers = rows("customer")
    assert int(customers[0][0]) == real["customer"] + 1
    n_customers = generate.SCALES["tiny"].customers
    assert [int(r[0]) for r in customers] == list(range(real["customer"] + 1, n_customers + 1))
    assert {int(r[12]) for r in customers} <= {3, 4, 5}  # Chinook's sales support agents
    assert len({r[11] for r in customers}) == len(customers)  # unique e-mails
    invoices = rows("invoice")
    assert int(invoices[0][0]) == real["invoice"] + 1
    assert all(1 <= int(r[1]) <= n_customers for r in invoices)
    lines = rows("invoice_line")
    assert int(lines[0][0]) == real["invoice_line"] + 1
    invoice_ids = {int(r[0]) for r in invoices}
    assert {int(r[1]) for r in lines} == invoice_ids  # every invoice has lines, every line an invoice
    n_tracks = real["track"]
    for table, cust_col, track_col in (("plays", 1, 2), ("reviews", 1, 2)):
        data = rows(table)
        assert all(1 <= int(r[cust_col]) <= n_customers for r in data)
        assert all(1 <= int(r[track_col]) <= n_tracks for r in data)
    limits = {"track": real["track"], "album": real["album"], "playlist": real["playlist"]}
    for r in rows("comments"):
        assert 1 <= int(r[3]) <= limits[r[2]]


def test_invoice_totals_are_the_sum_of_their_lines_at_the_tracks_price():
    price = {int(r["track_id"]): r["unit_price"] for r in datasets.read_chinook("track")}
    sums: Counter = Counter()
    for line_id, invoice_id, track_id, unit_price, quantity in rows("invoice_line"):
        assert unit_price == price[int(track_id)]
        sums[int(invoice_id)] += round(float(unit_price) * 100) * int(quantity)
    for r in rows("invoice"):
        assert round(float(r[8]) * 100) == sums[int(r[0])], r[0]


def test_generated_customers_bill_to_their_own_address():
    customers = {int(r[0]): r[4:9] for r in rows("customer")}
    real = {int(r["customer_id"]): [r[k] or "" for k in ("address", "city", "state", "country", "postal_code")]
            for r in datasets.read_chinook("customer")}
    for r in rows("invoice"):
        cid = int(r[1])
        assert r[3:8] == (customers[cid] if cid in customers else real[cid])


def test_time_order_popularity_and_rare_values():
    plays = rows("plays")
    played_at = [r[3] for r in plays]
    assert played_at == sorted(played_at)  # time order: the BRIN lesson
    assert [int(r[0]) for r in plays] == list(range(1, len(plays) + 1))
    per_track = sorted(Counter(r[2] for r in plays).values(), reverse=True)
    top_1pct = sum(per_track[: max(1, len(per_track) // 100)])
    assert top_1pct > 0.15 * len(plays)  # a few tracks get a large share (uniform would be ~1 %)
    reviews = rows("reviews")
    status = Counter(r[6] for r in reviews)
    assert set(status) == {"published", "pending", "flagged"}
    assert 0 < status["flagged"] < 0.02 * len(reviews)  # rare: the partial-index lesson
    deleted = sum(1 for r in reviews if r[8] != "")
    assert 0.02 * len(reviews) < deleted < 0.08 * len(reviews)  # soft delete, about 5 %
    assert len({(r[1], r[2]) for r in reviews}) == len(reviews)  # one review per customer and track


def test_text_fields_are_valid_csv_and_json():
    import json

    reviews = rows("reviews")
    attrs = [json.loads(r[5]) for r in reviews]
    assert all(a["device"] in generate.DEVICES and isinstance(a["verified"], bool) for a in attrs)
    assert any("tags" in a for a in attrs) and any("tags" not in a for a in attrs)
    assert all(len(r) == len(generate.COLUMNS["reviews"]) for r in reviews)
    assert all(r[4].endswith(".") and len(r[4].split()) >= 4 for r in reviews)


def test_vectorised_formatters_agree_with_python():
    rng = np.random.default_rng(7)
    ints = np.concatenate([[0, 1, 9, 10, 99, 100], rng.integers(0, 10**9, 200)])
    got = generate._rows_to_csv([generate._int_col(ints)]).decode().split()
    assert got == [str(int(i)) for i in ints]
    cents = np.array([0, 5, 99, 100, 199, 123456])
    got = generate._rows_to_csv([generate._money_col(cents)]).decode().split()
    assert got == ["0.00", "0.05", "0.99", "1.00", "1.99", "1234.56"]
    secs = np.concatenate([[0, 951_782_400, 4_107_542_399], rng.integers(0, 4_000_000_000, 300)])
    got = generate._rows_to_csv([generate._ts_col(secs)]).decode().splitlines()
    assert got == [datetime.fromtimestamp(int(s), timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00") for s in secs]


def test_chunks_are_bounded():
    assert all(c.count(b"\n") <= generate.CHUNK_ROWS for c in generate.iter_csv("plays", "tiny"))


def test_unknown_scale_is_one_clear_sentence():
    from helpers.core.errors import WorkbookError

    with pytest.raises(WorkbookError, match="Unknown scale 'huge'"):
        list(generate.iter_csv("plays", "huge"))


def test_ids_order_and_totals_hold_across_chunk_boundaries(monkeypatch):
    # At tiny scale most tables fit one chunk; small chunks exercise the joins between chunks.
    monkeypatch.setattr(generate, "CHUNK_ROWS", 997)
    assert sum(1 for _ in generate.iter_csv("invoice", "tiny")) > 5
    test_invoice_totals_are_the_sum_of_their_lines_at_the_tracks_price()
    for table in ("invoice_line", "plays", "reviews", "comments", "customer"):
        ids = [int(r[0]) for r in rows(table)]
        assert ids == list(range(ids[0], ids[0] + len(ids))), table
    for table, col in (("plays", 3), ("invoice", 2), ("reviews", 7)):
        stamps = [r[col] for r in rows(table)]
        assert stamps == sorted(stamps), table
