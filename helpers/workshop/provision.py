"""Provision, inspect and tear down a workshop: N learner roles and one shared template on one PostgreSQL server.

Run by the instructor with a role that has CREATEROLE and CREATEDB (or a superuser), on the server in
``DATABASE_URL`` (or the embedded one). What ``provision`` creates, and ``teardown`` drops again:

* one login role per learner, ``<prefix>_01`` ..., marked ``COMMENT ON ROLE ... IS 'pdw-workshop:{...}'``, with a
  generated password (sent as a SCRAM-SHA-256 verifier, so the password itself never reaches the server or its log),
  CREATEDB, a CONNECTION LIMIT and per-role defaults for statement_timeout, work_mem and temp_file_limit;
* one template database ``pdw_<prefix>_tpl_<scale>`` with the data set, loaded once (or copied from the instructor's
  own template when that one is ready), marked IS_TEMPLATE so every learner role can copy it, CONNECT revoked from
  PUBLIC so no learner can open it;
* the credentials, in ``var/workshop/<prefix>/`` (mode 0600): ``credentials.csv`` and one ``<learner>.env`` per
  learner with ``DATABASE_URL``, ``PDW_WORKSHOP`` and ``PDW_SCALE``.

The learners' own databases (``pdw_<learner>_<lesson>``) are created by ``lesson()`` as each learner runs a notebook;
they are owned by the learner and only the owner may connect (see ``helpers.db.create_own``).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql as pgsql

from helpers import db
from helpers.core import settings
from helpers.core.errors import WorkbookError

ROLE_MARKER = "pdw-workshop:"
PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{1,11}$")

#: Per-learner defaults (the instructor can change each with a provision option).
CONNECTION_LIMIT = 10       # a notebook kernel holds 2-3 connections (admin, lesson, SQLAlchemy); two notebooks fit
STATEMENT_TIMEOUT = "60s"   # the workbook sets its own per connection; this one covers psql and other clients
WORK_MEM = "16MB"
TEMP_FILE_LIMIT = "1GB"     # a hard limit: only a superuser may raise it


@dataclass
class Learner:
    role: str
    password: str
    url: str

    def env(self, prefix: str, scale: str) -> dict[str, str]:
        """The environment a learner's JupyterLab (or kernel) runs with."""
        return {"DATABASE_URL": self.url, "PDW_WORKSHOP": prefix, "PDW_SCALE": scale}


@dataclass
class Workshop:
    prefix: str
    scale: str
    template: str
    learners: list[Learner]
    directory: Path
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- names and secrets

def new_prefix(stem: str = "ws") -> str:
    return f"{stem}{secrets.token_hex(3)}"


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix or ""):
        raise WorkbookError(f"Workshop prefix {prefix!r} must be 2-12 characters, lower-case letters, digits or _, "
                            "starting with a letter (it starts every role and database name of the workshop).")
    return prefix


def learner_role(prefix: str, i: int, n: int) -> str:
    return f"{prefix}_{i:0{max(2, len(str(n)))}d}"


def template_db(prefix: str, scale: str) -> str:
    return db.db_name(prefix, f"tpl_{scale}", namespaced=False)


def directory(prefix: str) -> Path:
    return settings.VAR_DIR / "workshop" / prefix


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677), computed here."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def learner_url(tgt: db.Target, role: str, password: str, *, host: str | None = None,
                database: str = "postgres") -> str:
    """The DATABASE_URL a learner gets: the instructor's server, the learner's role and password."""
    kw = tgt.kwargs
    auth = f"{quote(role, safe='')}:{quote(password, safe='')}@"
    host = host or kw.get("host") or ""
    if host.startswith("/"):  # a unix socket (the embedded server, or a socket directory)
        port = str(kw.get("port") or 5432)  # it names the socket file, .s.PGSQL.<port>
        return f"postgresql://{auth}/{database}?host={quote(host, safe='/')}" + (f"&port={port}" if port != "5432" else "")
    port = kw.get("port") or 5432
    netloc = f"[{host}]" if ":" in host else host
    return f"postgresql://{auth}{netloc}:{port}/{database}"


# ---------------------------------------------------------------- the admin connection

def _admin() -> psycopg.Connection:
    conn = db.connect(timeout="0")
    row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
                       ).fetchone()
    if not (row[0] or (row[1] and row[2])):
        conn.close()
        raise WorkbookError(f"Role {conn.info.user!r} may not create roles and databases; provision a workshop as a "
                            "role with CREATEROLE and CREATEDB (or a superuser).")
    return conn


def _is_super(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0])


def workshop_roles(conn: psycopg.Connection, prefix: str) -> list[str]:
    """The learner roles of workshop ``prefix``: name starts with the prefix AND the role carries its marker."""
    rows = conn.execute(
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname LIKE %s ORDER BY rolname",
        (prefix.replace("_", r"\_") + r"\_%",)).fetchall()
    out = []
    for name, comment in rows:
        if comment and comment.startswith(ROLE_MARKER):
            try:
                mark = json.loads(comment[len(ROLE_MARKER):])
            except ValueError:
                continue
            if mark.get("workshop") == prefix:
                out.append(name)
    return out


def _workshop_templates(conn: psycopg.Connection, prefix: str) -> list[str]:
    """The workshop's template databases: named ``pdw_<prefix>_tpl_...`` AND marked with this workshop."""
    out = []
    for scale in settings.SCALES:
        name = template_db(prefix, scale)
        try:
            mark = db.marker_of(conn, name)
        except LookupError:
            continue
        if mark and mark.get("workshop") == prefix:
            out.append(name)
    return out


# ---------------------------------------------------------------- provision

def _build_template(admin: psycopg.Connection, prefix: str, scale: str, progress: bool,
                    copy_own: bool = True) -> tuple[str, str]:
    """The shared template: a copy of the instructor's own template when it is ready and current, else a fresh load.
    Returns (name, how)."""
    name = template_db(prefix, scale)
    if db.exists(admin, name):
        raise WorkbookError(f"Database {name!r} already exists: workshop {prefix!r} seems provisioned already "
                            f"(`python -m helpers workshop teardown --prefix {prefix}` removes it).")
    version = db.data_version()
    own = db.db_name(admin.info.user, f"tpl_{scale}", namespaced=False)
    mark = None
    if db.exists(admin, own):
        mark = db.marker_of(admin, own)
    if copy_own and mark and mark.get("state") == "ready" and mark.get("version") == version:
        try:
            db.create_own(admin, name, template=own, kind="template", scale=scale, state="ready", version=version,
                          rows=mark.get("rows"), workshop=prefix)
            how = f"copied from {own}"
        except (psycopg.Error, WorkbookError):
            mark = None  # busy or refused: load instead
    if not (copy_own and mark and mark.get("state") == "ready" and mark.get("version") == version):
        db.ensure_template(scale, name=name, progress=progress)
        db.set_marker(admin, name, **{**(db.marker_of(admin, name) or {}), "workshop": prefix})
        how = "loaded"
    with db.connect(name, timeout="0") as conn:
        hand_to_database_owner(conn)
    admin.execute(pgsql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(pgsql.Identifier(name)))
    return name, how


def hand_to_database_owner(conn: psycopg.Connection) -> int:
    """Give every object the loader created to ``pg_database_owner`` (PostgreSQL 14+): in each copy of the template
    the tables then belong to whoever owns that copy, i.e. the learner who made it, without any learner being a
    member of a shared role. Returns how many objects changed owner."""
    me = "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
    stmts = []
    for kind, relname in conn.execute(
            "SELECT c.relkind, format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.relowner = {me} AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
            # sequences owned by a column move with their table
            "AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
            "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) ORDER BY 2"):
        what = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}.get(kind, "TABLE")
        stmts.append(f"ALTER {what} {relname} OWNER TO pg_database_owner")
    for (typ,) in conn.execute(
            "SELECT format('%I.%I', n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            f"WHERE t.typowner = {me} AND t.typtype IN ('e', 'd', 'r', 'm') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"):
        stmts.append(f"ALTER TYPE {typ} OWNER TO pg_database_owner")
    for (fn,) in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            f"WHERE p.proowner = {me} AND n.nspname NOT IN ('pg_catalog', 'information_schema')"):
        stmts.append(f"ALTER ROUTINE {fn} OWNER TO pg_database_owner")
    for stmt in stmts:
        conn.execute(stmt)
    return len(stmts)


def _create_role(admin: psycopg.Connection, role: str, password: str, prefix: str, *, connection_limit: int,
                 statement_timeout: str, work_mem: str, temp_file_limit: str, notes: list[str]) -> None:
    ident = pgsql.Identifier(role)
    admin.execute(pgsql.SQL(
        "CREATE ROLE {} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION CONNECTION LIMIT {} PASSWORD {}"
    ).format(ident, pgsql.Literal(connection_limit), pgsql.Literal(scram_verifier(password))))
    admin.execute(pgsql.SQL("COMMENT ON ROLE {} IS {}").format(
        ident, pgsql.Literal(ROLE_MARKER + json.dumps({"workshop": prefix}))))
    try:  # lesson 00's environment check reads shared_preload_libraries, a setting only this role may see
        admin.execute(pgsql.SQL("GRANT pg_read_all_settings TO {}").format(ident))
    except psycopg.errors.InsufficientPrivilege:
        note = "GRANT pg_read_all_settings needs a superuser; lesson 00's environment check will say so."
        if note not in notes:
            notes.append(note)
    for setting, value in (("statement_timeout", statement_timeout), ("work_mem", work_mem),
                           ("temp_file_limit", temp_file_limit)):
        try:
            admin.execute(pgsql.SQL("ALTER ROLE {} SET {} = {}").format(
                ident, pgsql.Identifier(setting), pgsql.Literal(value)))
        except psycopg.errors.InsufficientPrivilege:
            note = f"{setting} per role needs a superuser (or GRANT SET ON PARAMETER {setting}); not set."
            if note not in notes:
                notes.append(note)


def provision(learners: int, *, prefix: str | None = None, scale: str | None = None,
              connection_limit: int = CONNECTION_LIMIT, statement_timeout: str = STATEMENT_TIMEOUT,
              work_mem: str = WORK_MEM, temp_file_limit: str = TEMP_FILE_LIMIT, host: str | None = None,
              database: str = "postgres", progress: bool = True, copy_own: bool = True) -> Workshop:
    """Create the workshop's roles and its shared template; write the credentials. Returns what it made."""
    if learners < 1:
        raise WorkbookError("A workshop needs at least one learner (--learners N).")
    prefix = check_prefix(prefix or new_prefix())
    scale = settings.current_scale(scale)
    started = time.perf_counter()
    tgt = db.target()
    timings: dict[str, float] = {}
    notes: list[str] = []
    with _admin() as admin:
        db.check_server(admin)
        names = [learner_role(prefix, i, learners) for i in range(1, learners + 1)]
        taken = [r for (r,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))]
        if taken:
            raise WorkbookError(f"Role {taken[0]!r} already exists: choose another --prefix, or tear workshop "
                                f"{prefix!r} down first.")
        made: list[Learner] = []
        try:
            t0 = time.perf_counter()
            template, how = _build_template(admin, prefix, scale, progress, copy_own)
            timings["template"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for role in names:
                password = secrets.token_urlsafe(18)
                _create_role(admin, role, password, prefix, connection_limit=connection_limit,
                             statement_timeout=statement_timeout, work_mem=work_mem,
                             temp_file_limit=temp_file_limit, notes=notes)
                made.append(Learner(role, password, learner_url(tgt, role, password, host=host, database=database)))
        except BaseException as exc:
            if not (isinstance(exc, WorkbookError) and "already exists" in str(exc)):  # never someone else's
                teardown(prefix, quiet=True)  # half a workshop is worse than none
            raise
        timings["roles"] = time.perf_counter() - t0
    ws = Workshop(prefix, scale, template, made, directory(prefix), timings, notes)
    write_credentials(ws)
    ws.timings["total"] = time.perf_counter() - started
    ws.notes.insert(0, f"template {template}: {how}")
    return ws


def write_credentials(ws: Workshop) -> None:
    """credentials.csv and one .env file per learner, readable by the instructor only."""
    ws.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(ws.directory, 0o700)

    def private(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)

    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["learner", "password", "database_url", "pdw_workshop", "pdw_scale"])
    for le in ws.learners:
        w.writerow([le.role, le.password, le.url, ws.prefix, ws.scale])
        private(ws.directory / f"{le.role}.env",
                "".join(f"{k}={v}\n" for k, v in le.env(ws.prefix, ws.scale).items()))
    private(ws.directory / "credentials.csv", buf.getvalue())
    private(ws.directory / "workshop.json", json.dumps(
        {"prefix": ws.prefix, "scale": ws.scale, "template": ws.template,
         "learners": [le.role for le in ws.learners]}, indent=2) + "\n")


def read_credentials(path: Path | str) -> list[dict[str, str]]:
    """The rows of a credentials.csv (learner, password, database_url, pdw_workshop, pdw_scale)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- status

def status(prefix: str) -> list[dict]:
    """One row per learner: their databases with sizes, and how many sessions they have open now."""
    check_prefix(prefix)
    with _admin() as admin:
        roles = workshop_roles(admin, prefix)
        out = []
        for name in _workshop_templates(admin, prefix):
            size = admin.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0]
            out.append({"learner": "(template)", "databases": [(name, size)], "sessions": 0, "active": 0})
        for role in roles:
            dbs = admin.execute(
                "SELECT datname, pg_database_size(oid) FROM pg_database "
                "WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY datname", (role,)).fetchall()
            sessions, active = admin.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE usename = %s",
                (role,)).fetchone()
            out.append({"learner": role, "databases": [tuple(r) for r in dbs], "sessions": sessions,
                        "active": active})
        return out


# ---------------------------------------------------------------- teardown

def teardown(prefix: str, *, quiet: bool = False, forget: bool = True) -> dict[str, list[str]]:
    """Drop exactly what provision created for ``prefix``: its marked roles, every database they own, and its
    marked template. Anything else, even with a similar name, is left alone. Returns what was dropped."""
    check_prefix(prefix)
    dropped: dict[str, list[str]] = {"roles": [], "databases": []}
    with _admin() as admin:
        superuser = _is_super(admin)
        roles = workshop_roles(admin, prefix)
        for role in roles:
            ident = pgsql.Identifier(role)
            if not superuser:  # a CREATEROLE instructor needs the learner's privileges to drop what it owns
                admin.execute(pgsql.SQL("GRANT {} TO CURRENT_USER").format(ident))
            # No new sessions, then end the open ones (notebooks still running).
            admin.execute(pgsql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            owned = [r for (r,) in admin.execute(
                "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s) "
                "ORDER BY datname", (role,))]
            for name in owned:
                db.drop_database(admin, name)
                dropped["databases"].append(name)
        for name in _workshop_templates(admin, prefix):
            admin.execute(pgsql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(pgsql.Identifier(name)))
            if db.drop_own(admin, name):
                dropped["databases"].append(name)
        for role in roles:
            ident = pgsql.Identifier(role)
            try:
                admin.execute(pgsql.SQL("DROP OWNED BY {}").format(ident))  # grants in this database
                admin.execute(pgsql.SQL("DROP ROLE {}").format(ident))
            except psycopg.errors.DependentObjectsStillExist as exc:
                raise WorkbookError(f"Role {role!r} still owns objects or privileges elsewhere "
                                    f"({db.explain_sql_error(exc)}); run DROP OWNED BY {role} in that database, "
                                    "then teardown again.") from None
            dropped["roles"].append(role)
    if forget and directory(prefix).exists():
        shutil.rmtree(directory(prefix))
    return dropped
