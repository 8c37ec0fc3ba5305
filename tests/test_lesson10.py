"""Lesson 10 (patterns): its helpers and its exercises, on a fresh tiny lesson database."""
from __future__ import annotations

import pytest

from helpers.lessons import patterns as l10
import helpers.lessons.solutions.patterns  # noqa: F401  (registers the reference solutions)
from helpers.exercises import NO_ANSWER, get
from helpers.lessons.solutions import solve

EXERCISE_IDS = ["10.live_email", "10.no_orphans"]


@pytest.fixture(scope="module")
def les(tiny_template):
    """A lesson database copied from the tiny template, dropped afterwards."""
    from helpers import db

    with db.temporary_lesson("t10_ex") as lesson:
        yield lesson


# ------------------------------------------------------------------------------------------ exercises

@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_check_fails_at_start_and_passes_after_the_solution(les, ex_id):
    ex = get(ex_id)
    assert ex.lesson == "10_patterns"
    ex.setup(les)
    start = ex.check(les, ex.starting_answer)
    assert not start.ok and str(start).startswith("Not yet. ") and len(start.message) > 30
    answer = solve(ex_id, les.conn)
    done = ex.check(les, answer)
    assert done.ok, done.message
    ex.setup(les)  # the setup brings back the starting state
    assert not ex.check(les, ex.starting_answer).ok


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
@pytest.mark.parametrize("answer", [NO_ANSWER, None, 3, "nonsense"])
def test_wrong_answers_get_a_message_not_a_crash(les, ex_id, answer):
    ex = get(ex_id)
    ex.setup(les)
    result = ex.check(les, answer)
    assert not result.ok and result.message


def test_checks_without_setup_explain(les):
    les.run("DROP TABLE IF EXISTS ex10_customer, ex10_comment, ex10_track, ex10_album")
    assert "setup" in get("10.live_email").check(les).message
    assert "setup" in get("10.no_orphans").check(les).message


# --- 10.live_email: the classic wrong answers, each named

@pytest.fixture
def email(les):
    ex = get("10.live_email")
    ex.setup(les)
    return ex


def test_live_email_other_correct_forms(les, email):
    # the constraint dropped by name, an index whose name or predicate is spelled differently
    les.run("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    les.run("CREATE UNIQUE INDEX whatever ON ex10_customer (email) WHERE (deleted_at IS NULL)")
    assert email.check(les).ok


def test_live_email_starting_state_reveals_no_answer(les, email):
    result = email.check(les)
    assert not result.answered and "not answered yet" in result.message
    assert "WHERE" not in result.message and "deleted_at" not in result.message


def test_live_email_keeping_the_constraint(les, email):
    les.run("CREATE UNIQUE INDEX live_only ON ex10_customer (email) WHERE deleted_at IS NULL")
    result = email.check(les)
    assert not result.ok and "covers every row" in result.message


def test_live_email_unique_with_deleted_at(les, email):
    les.run("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    les.run("CREATE UNIQUE INDEX pair ON ex10_customer (email, deleted_at)")
    result = email.check(les)
    assert not result.ok and "never compares NULLs" in result.message


def test_live_email_wrong_predicate(les, email):
    les.run("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    les.run("CREATE UNIQUE INDEX dead ON ex10_customer (email) WHERE deleted_at IS NOT NULL")
    result = email.check(les)
    assert not result.ok and "opposite" in result.message


def test_live_email_dropping_the_rule(les, email):
    les.run("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    result = email.check(les)
    assert not result.ok and "nothing enforces" in result.message


def test_live_email_nulls_not_distinct(les, email):
    if les.conn.info.server_version < 150000:
        pytest.skip("NULLS NOT DISTINCT is PostgreSQL 15+")
    les.run("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    les.run("CREATE UNIQUE INDEX nnd ON ex10_customer (email, deleted_at) NULLS NOT DISTINCT")
    # PostgreSQL 15+: live duplicates are refused and the returning customer accepted: a (heavier) correct form
    result = email.check(les)
    assert result.ok, result.message


# --- 10.no_orphans: the classic wrong answers, each named

@pytest.fixture
def arc(les):
    ex = get("10.no_orphans")
    ex.setup(les)
    return ex


def _columns(les, fk_track="", fk_album=""):
    les.run(f"ALTER TABLE ex10_comment ADD COLUMN track_id int {fk_track}, ADD COLUMN album_id int {fk_album}")
    les.run("UPDATE ex10_comment SET track_id = CASE WHEN commentable_type = 'track' THEN commentable_id END, "
            "album_id = CASE WHEN commentable_type = 'album' THEN commentable_id END")


CASCADE_T = "REFERENCES ex10_track ON DELETE CASCADE"
CASCADE_A = "REFERENCES ex10_album ON DELETE CASCADE"


def test_no_orphans_gives_no_hint_before_a_change_then_names_the_missing_columns(les, arc):
    start = arc.check(les)
    assert not start.ok and not start.answered and "no column" not in start.message
    les.run("CREATE INDEX ex10_comment_pair_idx ON ex10_comment (commentable_type, commentable_id)")  # a change, not the fix
    assert "no column track_id" in arc.check(les).message


def test_no_orphans_columns_not_filled(les, arc):
    les.run(f"ALTER TABLE ex10_comment ADD COLUMN track_id int {CASCADE_T}, ADD COLUMN album_id int {CASCADE_A}")
    assert "UPDATE ex10_comment" in arc.check(les).message


def test_no_orphans_wrong_values(les, arc):
    les.run(f"ALTER TABLE ex10_comment ADD COLUMN track_id int {CASCADE_T}, ADD COLUMN album_id int {CASCADE_A}")
    les.run("UPDATE ex10_comment SET track_id = CASE WHEN commentable_type = 'track' THEN 1 END, "
            "album_id = CASE WHEN commentable_type = 'album' THEN commentable_id END")
    les.run("ALTER TABLE ex10_comment DROP COLUMN commentable_type, DROP COLUMN commentable_id, "
            "ADD CHECK (num_nonnulls(track_id, album_id) = 1)")
    result = arc.check(les)
    assert not result.ok and "different target" in result.message


def test_no_orphans_without_foreign_keys(les, arc):
    _columns(les)
    result = arc.check(les)
    assert not result.ok and "is not a foreign key" in result.message


def test_no_orphans_without_cascade(les, arc):
    _columns(les, "REFERENCES ex10_track", "REFERENCES ex10_album")
    result = arc.check(les)
    assert not result.ok and "ON DELETE CASCADE" in result.message and "NO ACTION" in result.message


def test_no_orphans_without_check(les, arc):
    _columns(les, CASCADE_T, CASCADE_A)
    les.run("ALTER TABLE ex10_comment DROP COLUMN commentable_type, DROP COLUMN commentable_id")
    result = arc.check(les)
    assert not result.ok and "neither track_id nor album_id" in result.message


def test_no_orphans_or_instead_of_exactly_one(les, arc):
    _columns(les, CASCADE_T, CASCADE_A)
    les.run("ALTER TABLE ex10_comment DROP COLUMN commentable_type, DROP COLUMN commentable_id, "
            "ADD CHECK (track_id IS NOT NULL OR album_id IS NOT NULL)")
    result = arc.check(les)
    assert not result.ok and "'exactly one'" in result.message


def test_no_orphans_other_correct_forms(les, arc):
    # keeping the old pair (made nullable) and an equivalent CHECK written with IS NULL
    _columns(les, CASCADE_T, CASCADE_A)
    les.run("ALTER TABLE ex10_comment ALTER commentable_type DROP NOT NULL, ALTER commentable_id DROP NOT NULL, "
            "ADD CHECK ((track_id IS NULL) <> (album_id IS NULL))")
    assert arc.check(les).ok


# ------------------------------------------------------------------------------------------ helpers

def test_try_signups_counts_and_rolls_back(les):
    les.run("DROP INDEX IF EXISTS probe_idx")
    email = les.scalar("SELECT email FROM customer ORDER BY customer_id LIMIT 1")
    before = les.scalar("SELECT count(*) FROM customer")
    ok, refused, first = l10.try_signups(les, [email, "nobody-yet@example.org"])
    assert (ok, refused) == (1, 1) and "customer_email_key" in first
    assert les.scalar("SELECT count(*) FROM customer") == before


def test_count_as_role_sees_the_policy_and_leaves_nothing(les):
    les.run("CREATE TABLE t10_rls (id int, hidden bool)")
    try:
        les.run("INSERT INTO t10_rls VALUES (1, false), (2, true)")
        les.run("ALTER TABLE t10_rls ENABLE ROW LEVEL SECURITY")
        les.run("CREATE POLICY p ON t10_rls FOR SELECT USING (NOT hidden)")
        assert l10.count_as_role(les, "pg_read_all_data", "SELECT count(*) FROM t10_rls") == 1
        assert les.scalar("SELECT count(*) FROM t10_rls") == 2
        assert les.scalar("SELECT current_user") != "pg_read_all_data"
    finally:
        les.run("DROP TABLE t10_rls")


def test_audit_trigger_and_state_at(les):
    les.run("DROP TABLE IF EXISTS audit_log")
    les.run("DROP FUNCTION IF EXISTS audit_row()")
    les.run(l10.AUDIT_SQL)
    les.run("CREATE TRIGGER track_audit AFTER INSERT OR UPDATE OR DELETE ON track "
            "FOR EACH ROW EXECUTE FUNCTION audit_row('track_id')")
    try:
        tid = les.scalar("SELECT min(track_id) FROM track")
        t0 = les.scalar("SELECT clock_timestamp()")
        les.run("UPDATE track SET unit_price = unit_price WHERE track_id = %(t)s", {"t": tid})  # no change: no row
        assert les.scalar("SELECT count(*) FROM audit_log") == 0
        les.run("UPDATE track SET unit_price = 7.77, name = 'x' WHERE track_id = %(t)s", {"t": tid})
        diff = les.scalar("SELECT diff FROM audit_log")
        assert set(diff) == {"unit_price", "name"} and diff["unit_price"]["new"] == 7.77
        assert les.scalar("SELECT changed_by FROM audit_log") is None  # nobody set app.user
        state = les.scalar(l10.STATE_AT_SQL, {"t": t0, "track_id": tid})
        assert state["name"] != "x" and state["unit_price"] != 7.77
    finally:
        les.run("DROP TRIGGER track_audit ON track")
        les.run("DROP TABLE audit_log")
        les.run("DROP FUNCTION audit_row()")


def test_live_only_session_filters_and_can_be_bypassed(les):
    from sqlalchemy import func, select

    les.run("ALTER TABLE customer ADD COLUMN IF NOT EXISTS deleted_at timestamptz")
    les.run("UPDATE customer SET deleted_at = now() WHERE customer_id = (SELECT min(customer_id) FROM customer)")
    try:
        with l10.live_only_session(les.engine) as s:
            live = s.scalar(select(func.count()).select_from(l10.LiveCustomer))
            every = s.scalar(select(func.count()).select_from(l10.LiveCustomer),
                             execution_options={"include_deleted": True})
        assert every - live == 1
    finally:
        les.run("ALTER TABLE customer DROP COLUMN deleted_at")


def test_write_cost_cleans_up(les):
    les.run("DROP TABLE IF EXISTS audit_log")
    les.run("DROP FUNCTION IF EXISTS audit_row()")
    les.run(l10.AUDIT_SQL)
    try:
        cost = l10.trigger_write_cost(les, rows=500, repeat=2)
        assert len(cost.plain_s) == len(cost.audited_s) == 2 and cost.ratio > 0
        assert "rows/s" in str(cost)
        assert les.scalar("SELECT to_regclass('wc_audited')") is None
        assert les.scalar("SELECT count(*) FROM audit_log") == 0
    finally:
        les.run("DROP TABLE audit_log")
        les.run("DROP FUNCTION audit_row()")


def test_polymorphic_mappings_load_the_same_comments(les):
    from sqlalchemy.orm import Session

    tid = les.scalar("SELECT commentable_id FROM comments WHERE commentable_type = 'track' "
                     "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    expected = les.scalar(f"SELECT count(*) FROM comments WHERE commentable_type = 'track' AND commentable_id = {tid}")
    les.run("DROP TABLE IF EXISTS comment_arc, track_comment")
    les.run("CREATE TABLE comment_arc AS SELECT comment_id, body, "
            "CASE WHEN commentable_type = 'track' THEN commentable_id END AS track_id FROM comments")
    les.run("CREATE TABLE track_comment AS SELECT commentable_id AS track_id, comment_id FROM comments "
            "WHERE commentable_type = 'track'")
    try:
        with Session(les.engine) as session:
            counts = {d: len(session.get(T, tid).comments) for d, T in l10.polymorphic_mappings().items()}
        assert counts == {"generic": expected, "arc": expected, "join table": expected}
    finally:
        les.run("DROP TABLE comment_arc, track_comment")
