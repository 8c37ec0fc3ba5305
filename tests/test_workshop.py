"""Workshop mode on the test server: provision, isolation between learners, teardown that spares a sentinel, and a
small load test (N = 2). Every role and database here starts with a fresh ``wsh<hex>`` prefix."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat

import nbformat
import psycopg
import pytest
from psycopg import sql as pgsql

from helpers import db
from helpers.core.errors import WorkbookError
from helpers.workshop import loadtest
from helpers.workshop import provision as pv


def _ident(name):
    return pgsql.Identifier(name)


def _learner_target(le: pv.Learner) -> db.Target:
    return db.Target(db.parse_database_url(le.url), "DATABASE_URL")


def _connect_as(le: pv.Learner, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(**{**db.parse_database_url(le.url), "dbname": dbname}, autocommit=True, connect_timeout=5)


def test_learner_url_keeps_the_server_port():
    """On a socket the port names the file (.s.PGSQL.<port>): the embedded server started with --tcp uses its TCP
    port there too, so a learner's URL must carry it; on TCP the port is always written."""
    sock = db.Target({"host": "/srv/pg sock", "port": "55432", "user": "i"}, "embedded")
    url = pv.learner_url(sock, "ws_01", "p/w")
    assert url == "postgresql://ws_01:p%2Fw@/postgres?host=/srv/pg%20sock&port=55432"
    kw = db.parse_database_url(url)
    assert (kw["host"], str(kw["port"]), kw["password"]) == ("/srv/pg sock", "55432", "p/w")
    assert pv.learner_url(db.Target({"host": "/srv/pg", "port": "5432"}, "embedded"), "a", "b").endswith("?host=/srv/pg")
    assert pv.learner_url(db.Target({"host": "db.example.org"}, "DATABASE_URL"), "a", "b") == \
        "postgresql://a:b@db.example.org:5432/postgres"


@pytest.fixture(scope="module")
def sentinel():
    """What teardown must leave alone: a role with the workshop's prefix but no marker, one marked for another
    workshop, and a workbook-marked database with the prefix in its name, holding a row."""
    prefix = "wsh" + secrets.token_hex(3)
    roles = [f"{prefix}_99", f"{prefix}_98"]
    dbname = db.db_name(prefix, "sentinel", namespaced=False)
    with db.connect() as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(_ident(roles[0])))
        admin.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(_ident(roles[1])))
        admin.execute(pgsql.SQL("COMMENT ON ROLE {} IS {}").format(
            _ident(roles[1]), pgsql.Literal(pv.ROLE_MARKER + json.dumps({"workshop": "someother"}))))
        db.create_own(admin, dbname, kind="scratch")
        with db.connect(dbname) as conn:
            conn.execute("CREATE TABLE keep (note text); INSERT INTO keep VALUES ('do not drop me')")
    try:
        yield {"prefix": prefix, "roles": roles, "db": dbname}
    finally:
        with db.connect() as admin:
            db.drop_own(admin, dbname)
            for r in roles:
                admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(_ident(r)))


@pytest.fixture(scope="module")
def workshop(sentinel):
    ws = pv.provision(2, prefix=sentinel["prefix"], scale="tiny", progress=False)
    try:
        yield ws
    finally:
        pv.teardown(ws.prefix, quiet=True)


# ---------------------------------------------------------------- provision

def _scram_matches(verifier: str, password: str) -> bool:
    method, rest = verifier.split("$", 1)
    iters_salt, keys = rest.split("$")
    iters, salt = iters_salt.split(":")
    stored = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iters))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored


def test_provision_makes_limited_login_roles_and_one_shared_template(workshop):
    assert [le.role for le in workshop.learners] == [f"{workshop.prefix}_01", f"{workshop.prefix}_02"]
    with db.connect() as admin:
        rows = admin.execute(
            "SELECT rolname, rolcanlogin, rolcreatedb, rolsuper, rolcreaterole, rolconnlimit, rolconfig "
            "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", ([le.role for le in workshop.learners],)).fetchall()
        assert [r[0] for r in rows] == [le.role for le in workshop.learners]
        for _, login, createdb, sup, createrole, limit, config in rows:
            assert (login, createdb, sup, createrole, limit) == (True, True, False, False, pv.CONNECTION_LIMIT)
            assert {c.split("=")[0] for c in config} >= {"statement_timeout", "work_mem"}
        if admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            for le in workshop.learners:  # stored as SCRAM, and the verifier is the one of the handed-out password
                verifier = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                         (le.role,)).fetchone()[0]
                assert _scram_matches(verifier, le.password) and not _scram_matches(verifier, le.password + "x")
        tpl = workshop.template
        assert tpl == db.db_name(workshop.prefix, "tpl_tiny", namespaced=False)
        is_template, acl = admin.execute("SELECT datistemplate, datacl::text[] FROM pg_database WHERE datname = %s",
                                         (tpl,)).fetchone()
        assert is_template and not any(a.startswith("=") and "c" in a.split("/")[0] for a in acl), acl
        assert db.marker_of(admin, tpl)["workshop"] == workshop.prefix
        with db.connect(tpl) as conn:  # whoever owns a copy owns its tables
            owners = {r[0] for r in conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
            assert owners == {"pg_database_owner"}
    files = sorted(p.name for p in workshop.directory.iterdir())
    assert files == sorted(["credentials.csv", "workshop.json"] + [f"{le.role}.env" for le in workshop.learners])
    for p in workshop.directory.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    rows = pv.read_credentials(workshop.directory / "credentials.csv")
    assert [(r["learner"], r["password"], r["pdw_workshop"]) for r in rows] == \
        [(le.role, le.password, workshop.prefix) for le in workshop.learners]


def test_provision_refuses_a_bad_or_taken_prefix(workshop):
    with pytest.raises(WorkbookError, match="prefix"):
        pv.provision(1, prefix="Bad-Prefix!", scale="tiny", progress=False)
    with pytest.raises(WorkbookError, match="already exists"):
        pv.provision(2, prefix=workshop.prefix, scale="tiny", progress=False)


# ---------------------------------------------------------------- isolation

def test_learners_are_isolated(workshop, monkeypatch):
    a, b = workshop.learners
    # A runs a lesson as a learner does: DATABASE_URL + PDW_WORKSHOP; it copies the shared template.
    for k, v in a.env(workshop.prefix, "tiny").items():
        monkeypatch.setenv(k, v)
    les = db.lesson("01_schema_design", "tiny", quiet=True)
    try:
        assert les.conn.info.user == a.role and db.owner_of(les.conn, les.dbname) == a.role
        assert les.scalar("SELECT count(*) FROM artist") > 0            # the owner reads its copy's tables
        les.run("CREATE TABLE mine (x int)")
        les.run("SELECT 'wsh-secret-of-A' AS marker")                    # stays in pg_stat_activity as A's last query
        with _connect_as(b) as cb:
            for target in (les.dbname, workshop.template):               # B cannot connect to A's copy or the template
                with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                    _connect_as(b, target).close()
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                cb.execute(pgsql.SQL("DROP DATABASE {}").format(_ident(les.dbname)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                cb.execute(pgsql.SQL("DROP DATABASE {}").format(_ident(workshop.template)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to copy"):
                cb.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    _ident(db.db_name(b.role, "stolen", namespaced=False)), _ident(les.dbname)))
            seen = cb.execute("SELECT query FROM pg_stat_activity WHERE usename = %s", (a.role,)).fetchall()
            assert seen and all(q == "<insufficient privilege>" for (q,) in seen), seen
        with db.connect() as admin:  # not vacuous: the text is there for those allowed to see it
            queries = [q for (q,) in admin.execute("SELECT query FROM pg_stat_activity WHERE usename = %s",
                                                   (a.role,))]
            assert any("wsh-secret-of-A" in q for q in queries)
            b_dbs = admin.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                                  (db.db_name(b.role, "", namespaced=False) + "%",)).fetchone()[0]
            assert b_dbs == 0
            # A copied the shared template: no data load of A's own (one load for the whole workshop)
            assert not db.exists(admin, db.db_name(a.role, "tpl_tiny", namespaced=False))
    finally:
        les.close()


# ---------------------------------------------------------------- status and teardown

def test_status_lists_learners_databases_and_sessions(workshop):
    rows = pv.status(workshop.prefix)
    assert rows[0]["learner"] == "(template)" and rows[0]["databases"][0][0] == workshop.template
    assert [r["learner"] for r in rows[1:]] == [le.role for le in workshop.learners]


def test_teardown_drops_exactly_what_provision_created(sentinel):
    prefix = sentinel["prefix"]
    ws = pv.provision(1, prefix=prefix + "t", scale="tiny", progress=False)
    le = ws.learners[0]
    with db.connect() as admin:
        # the learner's own work: a lesson database, and a database made by hand
        db.create_own(admin, db.db_name(le.role, "by_lesson", namespaced=False), template=ws.template,
                      kind="lesson")
        admin.execute(pgsql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            _ident(db.db_name(le.role, "by_lesson", namespaced=False)), _ident(le.role)))
    with _connect_as(le) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(_ident(f"{le.role}_scratch")))
    done = pv.teardown(ws.prefix)
    assert done["roles"] == [le.role]
    assert sorted(done["databases"]) == sorted([db.db_name(le.role, "by_lesson", namespaced=False),
                                                f"{le.role}_scratch", ws.template])
    assert not ws.directory.exists()
    with db.connect() as admin:
        assert not admin.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE %s", (prefix + "t%",)).fetchall()
        assert sorted(r for (r,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                                   (sentinel["roles"],))) == sorted(sentinel["roles"])
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s", (f"%{prefix}t%",)).fetchall()
        with db.connect(sentinel["db"]) as conn:
            assert conn.execute("SELECT note FROM keep").fetchall() == [("do not drop me",)]
    assert pv.teardown(ws.prefix) == {"roles": [], "databases": []}  # twice is harmless


def test_an_instructor_with_createrole_and_createdb_is_enough(monkeypatch):
    """No superuser needed: provision, a learner's lesson, and teardown as a CREATEROLE CREATEDB role."""
    with db.connect() as admin:
        if not admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            pytest.skip("needs a superuser to create the instructor role")
        tgt = db.target()
    original = os.environ.get("DATABASE_URL")
    instructor = "wsh" + secrets.token_hex(3) + "i"
    prefix = instructor + "w"
    with db.connect() as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(_ident(instructor)))
    try:
        monkeypatch.setenv("DATABASE_URL", pv.learner_url(tgt, instructor, "unused").replace(":unused@", "@"))
        ws = pv.provision(1, prefix=prefix, scale="tiny", progress=False)
        with db.connect() as conn:
            assert conn.info.user == instructor
        le = ws.learners[0]
        for k, v in le.env(prefix, "tiny").items():
            monkeypatch.setenv(k, v)
        les = db.lesson("01_schema_design", "tiny", quiet=True)
        try:
            assert les.conn.info.user == le.role and les.scalar("SELECT count(*) FROM album") > 0
        finally:
            les.close()
        monkeypatch.setenv("DATABASE_URL", pv.learner_url(tgt, instructor, "unused").replace(":unused@", "@"))
        done = pv.teardown(prefix)
        assert done["roles"] == [le.role] and len(done["databases"]) == 2
    finally:  # back to the superuser: whatever is left of the instructor's goes
        for k in ("PDW_WORKSHOP", "PDW_SCALE"):
            monkeypatch.delenv(k, raising=False)
        if original is None:
            monkeypatch.delenv("DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("DATABASE_URL", original)
        try:
            pv.teardown(prefix, quiet=True)
        except WorkbookError:  # the superuser refuses the instructor's template (not its own); dropped below
            pass
        with db.connect() as admin:
            for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datdba = "
                                         "(SELECT oid FROM pg_roles WHERE rolname = %s)", (instructor,)).fetchall():
                admin.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(name)))
            admin.execute(pgsql.SQL("DROP OWNED BY {}").format(_ident(instructor)))
            admin.execute(pgsql.SQL("DROP ROLE {}").format(_ident(instructor)))


# ---------------------------------------------------------------- load test, N = 2

def test_loadtest_with_two_learners(tmp_path, monkeypatch):
    """The mechanics of the benchmark on a two-cell notebook: provision, two kernels at once, each as its own role,
    results stored, teardown."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('from helpers import lesson\ndb = lesson("01_schema_design", quiet=True)'),
        nbformat.v4.new_code_cell('assert db.scalar("SELECT current_user").startswith("lt")\n'
                                  'assert db.dbname.startswith("pdw_lt")\nprint(db.scalar("SELECT count(*) FROM track"))'),
    ])
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setattr(loadtest, "NOTEBOOKS", tmp_path)
    summary = loadtest.run(2, "99_probe", scale="tiny", out=str(tmp_path / "out"), progress=False)
    assert summary["errors"] == [] and len(summary["times"]) == 2 and all(t > 0 for t in summary["times"])
    assert summary["p50"] <= summary["p95"] <= max(summary["times"])
    stored = loadtest.stored("99_probe", str(tmp_path / "out"))
    assert [r["learners"] for r in stored] == [2]
    with db.connect() as admin:  # torn down: no role, no database of that workshop is left
        assert not admin.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE %s",
                                 (summary["prefix"] + "%",)).fetchall()
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s",
                                 ("pdw_" + summary["prefix"] + "%",)).fetchall()


def test_capacity_rule_and_percentiles():
    assert loadtest.percentile([1, 2, 3, 4], 50) == 2.5 and loadtest.percentile([5], 95) == 5
    runs = [{"learners": n, "p50": t, "cores": 2} for n, t in ((1, 10.0), (4, 14.0), (8, 30.0))]
    cap = loadtest.capacity(runs)
    assert cap["n"] == pytest.approx(4 + 4 * 6 / 16) and cap["per_core"] == pytest.approx(cap["n"] / 2)
    cap = loadtest.capacity(runs[:2])  # not doubled yet: extrapolated along the last two points
    assert cap["extrapolated"] and cap["n"] == pytest.approx(4 + 3 * 6 / 4)
    assert loadtest.min_scale_of(loadtest.notebook_path("03_indexing")) == "default"


# ---------------------------------------------------------------- docker-compose's workshop profile (read, not run)

def _compose() -> dict:
    import yaml

    return yaml.safe_load((loadtest.settings.PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_workshop_profile_runs_the_hub_in_front_of_postgres_18():
    services = _compose()["services"]
    hub, pg = services["hub"], services["postgres"]
    assert hub["profiles"] == ["workshop"] and "profiles" not in pg  # `docker compose up` alone: postgres only
    assert pg["image"] == "postgres:18"
    assert hub["depends_on"]["postgres"]["condition"] == "service_healthy"
    script = hub["entrypoint"][2]
    assert ".[workshop]" in script and "jupyterhub -f workshop/jupyterhub_config.py" in script
    assert "-m helpers workshop" in script and hub["command"] == []
    env = hub["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"] and env["PDW_WORKSHOP_HOST"] == "postgres"
    assert env["PDW_HUB_CREDENTIALS"].startswith("/workbook/") and env["PDW_HUB_SYSTEM_USERS"].endswith(":-1}")
    assert all(str(p).startswith("${PDW_HUB_BIND:-127.0.0.1}:") for p in hub["ports"])  # loopback unless asked
    assert ".:/workbook" in hub["volumes"] and "pdw-hub" in _compose()["volumes"]
    assert "max_connections=200" in pg["command"]


def test_hub_config_reads_the_settings_the_docs_name():
    text = (loadtest.settings.PROJECT_ROOT / "workshop" / "jupyterhub_config.py").read_text()
    readme = (loadtest.settings.PROJECT_ROOT / "workshop" / "README.md").read_text()
    names = {"PDW_HUB_CREDENTIALS", "PDW_HUB_DIR", "PDW_HUB_IP", "PDW_HUB_PORT", "PDW_HUB_SYSTEM_USERS"}
    assert all(f'"{n}"' in text and n in readme for n in names)
    compile(text, "jupyterhub_config.py", "exec")


def test_loadtest_counts_a_failed_cell_and_still_times_the_whole_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0"),
                                         nbformat.v4.new_code_cell("open('after', 'w').write('ran')")])
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    loadtest.run_one(str(path), str(tmp_path / "r.json"), 60)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["error"].startswith("code cell 0: ZeroDivisionError") and result["seconds"] > 0
    assert (tmp_path / "after").read_text() == "ran"
