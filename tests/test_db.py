"""The foundation's guard rails: clear errors, owned databases only, timeouts, interrupts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from psycopg import sql as pgsql

from helpers import db
from helpers.core.errors import WorkbookError


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.rstrip().endswith((".", ")")), msg


# ---------------------------------------------------------------- DATABASE_URL and connection errors

@pytest.mark.parametrize("url", ["garbage", "mysql://root@localhost/db", "postgresql://u@host:notaport/db",
                                 "postgresql://u@/db?badoption=1"])
def test_malformed_database_url_gives_one_sentence(monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(WorkbookError) as err:
        db.connect(tgt=db.target())
    _one_sentence(str(err.value))
    assert "DATABASE_URL" in str(err.value) or "PostgreSQL" in str(err.value)


def test_password_is_masked_in_messages(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://alice:s3cret@host/db")
    with pytest.raises(WorkbookError) as err:
        db.target()
    assert "s3cret" not in str(err.value)


def test_unreachable_server_names_host_and_port(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(WorkbookError) as err:
        db.connect()
    msg = str(err.value)
    _one_sentence(msg)
    assert "127.0.0.1:1" in msg and "DATABASE_URL" in msg


def test_unknown_role_is_explained():
    tgt = db.target()
    bad = db.Target({**tgt.kwargs, "user": "pdw_no_such_role"}, tgt.kind)
    with pytest.raises(WorkbookError) as err:
        db.connect(tgt=bad)
    assert "pdw_no_such_role" in str(err.value)
    _one_sentence(str(err.value))


def test_unknown_database_is_explained():
    with pytest.raises(WorkbookError) as err:
        db.connect("pdw_no_such_database_xyz")
    assert "pdw_no_such_database_xyz" in str(err.value)


def test_old_server_is_refused():
    class Info:
        server_version = 140011
        user = "someone"

    class Old:
        info = Info()

    with pytest.raises(WorkbookError, match="needs 15 or newer"):
        db.check_server(Old())


def test_role_without_createdb_is_refused():
    with db.connect() as admin:
        can = admin.execute("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not can[0]:
            pytest.skip("needs CREATEROLE to make a role without CREATEDB")
        role = db.db_name(admin.info.user, "nocreatedb")  # per run: concurrent runs never share it
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(pgsql.Identifier(role)))
        try:
            tgt = db.target()
            weak = db.Target({**tgt.kwargs, "user": role}, tgt.kind)
            with db.connect(tgt=weak) as conn:
                with pytest.raises(WorkbookError, match="CREATEDB") as err:
                    db.check_server(conn)
                _one_sentence(str(err.value))
        finally:
            admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))


# ---------------------------------------------------------------- nothing lost

def test_refuses_to_drop_a_database_it_did_not_create():
    with db.connect() as admin:
        name = db.db_name(admin.info.user, "99_sentinel_lesson")
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {}").format(pgsql.Identifier(name)))
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        try:
            with db.connect(name) as c:
                c.execute("CREATE TABLE precious (x int)")
                c.execute("INSERT INTO precious VALUES (42)")
            with pytest.raises(WorkbookError, match="not created by the workbook") as err:
                db.lesson("99_sentinel_lesson", "tiny", quiet=True)
            _one_sentence(str(err.value))
            with db.connect(name) as c:
                assert c.execute("SELECT x FROM precious").fetchone() == (42,)
        finally:
            admin.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name)))


class _RecordingConn:
    """Stands in for a connection whose role may not use DROP DATABASE ... WITH (FORCE) right now."""

    def __init__(self):
        self.sent: list[str] = []

    def execute(self, query, params=None):
        text = query if isinstance(query, str) else repr(query)
        self.sent.append(text)
        if "FORCE" in text:
            raise psycopg.errors.InsufficientPrivilege("permission denied to terminate process")


def test_a_forced_drop_that_the_server_refuses_ends_what_it_may_and_drops_without_force():
    """An autovacuum worker in the database makes WITH (FORCE) fail for a role that is not a superuser (CI met it
    tearing a workshop down as a CREATEROLE instructor); the plain DROP DATABASE that follows ends the worker itself."""
    conn = _RecordingConn()
    db.drop_database(conn, "pdw_x_01_schema_design")
    assert len(conn.sent) == 3
    assert "FORCE" in conn.sent[0]
    assert "pg_terminate_backend" in conn.sent[1] and "pg_has_role" in conn.sent[1]
    assert "DROP DATABASE" in conn.sent[2] and "FORCE" not in conn.sent[2]
    calm = _RecordingConn()
    db.drop_database(calm, "pdw_x_01_schema_design", force=False)
    assert len(calm.sent) == 1 and "FORCE" not in calm.sent[0]


def test_a_role_that_is_not_a_superuser_drops_its_database_and_spares_other_roles_sessions():
    """Owner O (CREATEDB only) drops its marked database: its own sessions are ended; a session of a role O has no
    privileges of makes the drop fail in one sentence, and that session and the database survive."""
    with db.connect() as admin:
        if not admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            pytest.skip("needs a superuser to create the two roles")
        owner, other = db.db_name(admin.info.user, "dropowner"), db.db_name(admin.info.user, "dropother")
        for role, attrs in ((owner, "LOGIN CREATEDB"), (other, "LOGIN")):
            admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))
            admin.execute(pgsql.SQL("CREATE ROLE {} " + attrs).format(pgsql.Identifier(role)))
        tgt = db.target()
        as_owner, as_other = (db.Target({**tgt.kwargs, "user": r}, tgt.kind) for r in (owner, other))
        name = db.db_name(owner, "99_drop_me")
        try:
            with db.connect(tgt=as_owner) as oc:
                db.create_own(oc, name, kind="lesson", lesson="99_drop_me", scale="tiny")
                oc.execute(pgsql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    pgsql.Identifier(name), pgsql.Identifier(other)))  # create_own lets only its owner in
                mine = db.connect(name, tgt=as_owner)
                theirs = db.connect(name, tgt=as_other)
                with pytest.raises(WorkbookError, match=f"Could not drop {name!r}") as err:
                    db.drop_own(oc, name)
                _one_sentence(str(err.value))
                assert theirs.execute("SELECT 1").fetchone() == (1,)  # another role's session is left alone
                assert mine.closed or _ended(mine)  # the owner's own session was ended on the way
                assert db.owner_of(oc, name) == owner
                theirs.close()
                again = db.connect(name, tgt=as_owner)
                assert db.drop_own(oc, name) is True and db.owner_of(oc, name) is None
                assert _ended(again)
        finally:
            admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
            for role in (owner, other):
                admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


def _ended(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    finally:
        conn.close()
    return False


@pytest.mark.parametrize("held_s, said", [(0.5, False), (1.5, True)])
def test_a_short_wait_for_the_template_lock_is_silent(held_s, said, capsys):
    """Two lessons opened at once both take the template's lock for a moment: the one that waits must not write to
    stderr (nbval counts any stderr as a changed output); a wait past ``quiet_s`` is said, once."""
    import threading

    name = f"pdw_lock_test_{os.getpid()}_{held_s}"
    with db.connect() as holder, db.connect() as waiter:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        timer = threading.Timer(held_s, lambda: holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,)))
        timer.start()
        t0 = time.monotonic()
        with db.advisory_lock(waiter, name, quiet_s=1.0):
            waited = time.monotonic() - t0
        timer.join()
    err = capsys.readouterr().err
    assert waited >= held_s * 0.9
    assert ("Waiting for another process" in err) is said and err.count("Waiting") <= 1


def test_names_derive_from_role_and_fit_the_identifier_limit(monkeypatch):
    monkeypatch.setenv("PDW_NAMESPACE", "")
    assert db.db_name("alice", "03_indexing") == "pdw_alice_03_indexing"
    # lossy slugs get a hash of the exact role, so look-alike roles on a shared server never collide
    assert db.db_name("Alice.Smith", "03_indexing").startswith("pdw_alice_smith_")
    assert db.db_name("Alice.Smith", "x") != db.db_name("alice_smith", "x") != db.db_name("Alice_Smith", "x")
    assert db.db_name("participant_2026_group_01", "x") != db.db_name("participant_2026_group_02", "x")
    monkeypatch.setenv("PDW_NAMESPACE", "testbqx")
    assert db.db_name("alice", "03_indexing") == "pdw_alice_testbqx_03_indexing"
    assert db.db_name("alice", "tpl_default", namespaced=False) == "pdw_alice_tpl_default"
    assert db.db_name("bob", "03_indexing") != db.db_name("carol", "03_indexing")
    assert len(db.db_name("x" * 80, "y" * 80)) <= 63


# ---------------------------------------------------------------- lessons

def test_lesson_is_fresh_each_time(tiny_template):
    first = db.lesson("98_fresh", "tiny", quiet=True)
    first.run("CREATE TABLE scribble (x int)")
    first.close()
    second = db.lesson("98_fresh", "tiny", quiet=True)
    try:
        assert second.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'scribble'") == 0
        assert second.scalar("SELECT current_setting('TimeZone')") == "UTC"
        assert second.scalar("SELECT current_setting('statement_timeout')") != "0"
    finally:
        second.close()
        with db.connect() as admin:
            db.drop_own(admin, second.dbname)


def test_min_scale_raises_the_scale_and_says_so_in_one_sentence(monkeypatch, capsys):
    asked = []

    class Stop(Exception):
        pass

    def fake_template(scale, **_):
        asked.append(scale)
        raise Stop

    monkeypatch.setattr(db, "ensure_template", fake_template)
    for current, minimum, used in (("tiny", "default", "default"), ("default", "default", "default"),
                                   ("workshop", "default", "workshop"), ("tiny", None, "tiny")):
        with pytest.raises(Stop):
            db.lesson("96_scale", current, min_scale=minimum)
        assert asked.pop() == used
        said = capsys.readouterr().out.strip()
        assert (said.count(".") == 1 and "'default' data set" in said) if used != current else said == ""


def test_lesson_sql_errors_are_one_sentence_and_connection_survives(tiny_template, capsys):
    with db.temporary_lesson("97_errors") as les:
        with pytest.raises(WorkbookError, match='relation "no_such_table" does not exist'):
            les.sql("SELECT * FROM no_such_table")
        with pytest.raises(WorkbookError, match="syntax error"):
            les.sql("SELEC 1")
        les.try_sql("SELECT 1/0")
        assert capsys.readouterr().out == "ERROR: division by zero\n"
        les.try_sql("CREATE TABLE fine (x int)")
        assert capsys.readouterr().out == "OK\n"
        assert les.sql("SELECT 1 AS one")["one"].tolist() == [1]


def test_statement_timeout_stops_a_runaway_query(tiny_template):
    with db.temporary_lesson("96_timeout") as les:
        les.set_timeout("300ms")
        started = time.perf_counter()
        with pytest.raises(WorkbookError, match="statement_timeout") as err:
            les.sql("SELECT pg_sleep(5)")
        elapsed = time.perf_counter() - started
        assert elapsed < 3, elapsed
        assert "300ms" in str(err.value)
        _one_sentence(str(err.value))
        assert les.scalar("SELECT 2") == 2  # still usable


def test_interrupt_cancels_the_query_on_the_server(empty_db):
    """Ctrl-C (SIGINT, what 'interrupt the kernel' sends) must stop the query on the server too."""
    dbname = empty_db.info.dbname
    code = textwrap.dedent(f"""
        import signal
        import sys
        from helpers import db
        # Python's own Ctrl-C handler, as a Jupyter kernel has: a job a shell starts in the background inherits SIGINT
        # ignored, and then nothing would interrupt the query.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn = db.connect({dbname!r}, app="pdw-interrupt-test")
        print("ready", flush=True)
        try:
            conn.execute("SELECT pg_sleep(60)")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            print(conn.execute("SELECT 7").fetchone()[0], flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(50):
            if empty_db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pdw-interrupt-test'"
                                " AND query LIKE 'SELECT pg_sleep%%' AND state = 'active'").fetchone()[0]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the query never started")
        proc.send_signal(signal.SIGINT)
        # psycopg's own Ctrl-C handling may take up to 10 s (a 5 s cancel, then 5 s for the reply); the query sleeps 60
        out, _ = proc.communicate(timeout=30)
        assert out.split() == ["interrupted", "7"]
        active = empty_db.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%%'"
                                  " AND state = 'active'").fetchone()[0]
        assert active == 0
    finally:
        proc.kill()


def test_scratch_database_is_dropped(empty_db):
    name = empty_db.info.dbname
    with db.connect() as admin:
        mark = db.marker_of(admin, name)
    assert mark["kind"] == "scratch"


def test_sqlalchemy_engine_reaches_the_lesson_database(tiny_template):
    from sqlalchemy import text

    with db.temporary_lesson("95_engine") as les:
        with les.engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == les.dbname
            assert conn.execute(text("SHOW jit")).scalar() == "off"


# ---------------------------------------------------------------- templates: half-built or stale ones are rebuilt

@pytest.fixture
def own_template():
    """A tiny template of this test's own (the shared ones stay untouched by concurrent runs), dropped afterwards."""
    with db.connect() as admin:
        name = db.db_name(admin.info.user, "tpl_test_own")
    db.ensure_template("tiny", progress=False, name=name)
    yield name
    with db.connect() as admin:
        db.drop_own(admin, name)


def test_a_half_built_template_is_rebuilt(own_template):
    """A load killed midway leaves the template marked 'building'; the next call notices and rebuilds it."""
    with db.connect() as admin:
        mark = db.marker_of(admin, own_template)
        db.set_marker(admin, own_template, **{**mark, "state": "building"})
        with db.connect(own_template) as c:
            c.execute("DROP TABLE plays")  # what a half-done load looks like
    assert db.ensure_template("tiny", progress=False, name=own_template) == own_template
    with db.connect() as admin:
        assert db.marker_of(admin, own_template)["state"] == "ready"
    with db.connect(own_template) as c:
        assert c.execute("SELECT count(*) > 0 FROM plays").fetchone()[0]


def test_a_template_from_older_data_is_rebuilt(own_template):
    with db.connect() as admin:
        mark = db.marker_of(admin, own_template)
        db.set_marker(admin, own_template, **{**mark, "version": "older-data"})
    db.ensure_template("tiny", progress=False, name=own_template)
    with db.connect() as admin:
        assert db.marker_of(admin, own_template)["version"] == db.data_version()


def test_a_failed_load_leaves_no_template_behind():
    def broken_loader(conn, scale, progress):
        conn.execute("CREATE TABLE half (x int)")
        raise RuntimeError("disk full (simulated)")

    with db.connect() as admin:
        name = db.db_name(admin.info.user, "tpl_test_broken")
    with pytest.raises(RuntimeError):
        db.ensure_template("tiny", loader=broken_loader, name=name)
    with db.connect() as admin:
        assert not db.exists(admin, name)


@pytest.mark.parametrize("server_says, expected", [
    ('FATAL:  password authentication failed for user "alice"', "rejected the login for role 'alice'"),
    ("fe_sendauth: no password supplied", "rejected the login for role 'alice'"),
    ('FATAL:  database "shop" does not exist', "has no database 'shop'"),
    ("connection to server at \"db.example.org\" (10.0.0.9), port 5432 failed: Connection refused",
     "Cannot reach PostgreSQL at db.example.org:5432"),
    ('could not translate host name "db.exampel.org" to address: Name or service not known',
     "Cannot reach PostgreSQL at db.example.org:5432"),
])
def test_connection_failures_are_explained_in_one_sentence(server_says, expected):
    """Password failures cannot happen on the trust-auth servers here, so the mapping is checked directly."""
    tgt = db.Target({"host": "db.example.org", "port": 5432, "user": "alice", "dbname": "shop"}, "DATABASE_URL")
    msg = str(db._explain_connect_error(psycopg.OperationalError(server_says), tgt))
    assert expected in msg
    _one_sentence(msg)


# ---------------------------------------------------------------- a failed BEGIN ... COMMIT never sticks (issue 22)

def _stick(les) -> None:
    """Leave the lesson's connection in a failed transaction, as one failed statement inside BEGIN ... does."""
    les.conn.execute("BEGIN")
    with pytest.raises(psycopg.Error):
        les.conn.execute("SELECT 1/0")
    assert les.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR


def _idle(les) -> bool:
    return les.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_failed_transaction_sent_as_one_string_is_rolled_back_and_said_once(tiny_template, capsys, caplog):
    with db.temporary_lesson("95_stuck") as les:
        les.run("CREATE TABLE keep (x int)")
        les.run("INSERT INTO keep VALUES (1)")
        les.try_sql("BEGIN; DELETE FROM keep; CREATE TABLE nope PARTITION OF no_parent DEFAULT; COMMIT")
        out = capsys.readouterr().out
        assert out.startswith('ERROR: relation "no_parent" does not exist') and "now rolled back" in out, out
        assert out.count("\n") == 1 and _idle(les)
        assert les.scalar("SELECT count(*) FROM keep") == 1  # the DELETE before the error was not kept
        with pytest.raises(WorkbookError, match="now rolled back"):
            les.run("BEGIN; DELETE FROM keep; SELECT 1/0; ROLLBACK")
        assert _idle(les) and les.sql("SELECT x FROM keep")["x"].tolist() == [1]
        les.run("BEGIN")  # a healthy transaction opened on purpose is left alone
        les.run("INSERT INTO keep VALUES (2)")
        les.run("COMMIT")
        assert les.scalar("SELECT count(*) FROM keep") == 2
    assert "_pg3_" not in caplog.text


@pytest.mark.parametrize("entry", ["sql", "run", "scalar", "try_sql", "set_timeout"])
def test_every_entry_point_rolls_back_a_stuck_transaction_first(tiny_template, capsys, entry):
    with db.temporary_lesson("94_stuck") as les:
        _stick(les)
        arg = "60s" if entry == "set_timeout" else "SELECT 1"
        getattr(les, entry)(arg)
        out = capsys.readouterr().out
        assert out.splitlines()[0] == db.FAILED_TRANSACTION_NOTE, out
        assert "current transaction is aborted" not in out and _idle(les)


def test_the_aborted_transaction_message_says_what_to_do():
    exc = psycopg.errors.InFailedSqlTransaction("current transaction is aborted, commands ignored until end of "
                                                "transaction block")
    assert "db.run('ROLLBACK')" in db.explain_sql_error(exc)


def test_a_literal_percent_next_to_parameters_gets_the_double_percent_tip(tiny_template):
    with db.temporary_lesson("93_percent") as les:
        with pytest.raises(WorkbookError, match="literal % in the query as %%") as err:
            les.sql("SELECT name FROM artist WHERE name LIKE 'A%' AND artist_id > %(id)s", {"id": 1})
        _one_sentence(str(err.value))
        assert les.scalar("SELECT count(*) FROM artist WHERE name LIKE 'A%%' AND artist_id > %(id)s", {"id": 0}) > 0
