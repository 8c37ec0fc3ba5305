"""Lesson 08 (migrations): measured locks, rewrites, the writer, squawk, and the exercises' verdicts.

Lock modes, rewrites (relfilenode) and invalid indexes are asserted exactly; the writer's rows are counted while
the build's lock is seen granted (exact), never timed. The exercises' bound on the writer's wait (1.5 s) is tested
with answers that hold a conflicting lock for 3 s.
"""
from __future__ import annotations

import pytest

from helpers.exercises import get
from helpers.lessons import migrations as l8
from helpers.lessons.solutions import solve
from helpers.lessons.solutions import migrations as sol  # noqa: F401  (registers the solutions)


@pytest.fixture(scope="module")
def les(tiny_template):
    from helpers import db

    with db.temporary_lesson("t08_mig") as lesson:
        lesson.rows = l8.setup_copy(lesson.conn)
        yield lesson


def test_copy_is_own_and_plays_untouched(les):
    assert les.rows == les.scalar("SELECT count(*) FROM plays")
    assert les.scalar("SELECT count(*) FROM mig_small") == min(1000, les.rows)


def test_lock_table_is_measured_and_leaves_the_table_unchanged(les):
    cols = les.sql("SELECT * FROM mig_small LIMIT 0").columns.tolist()
    t = l8.lock_table(les.conn)
    mode = dict(zip(t["statement"], t["lock on the table"]))
    assert mode["CREATE INDEX"] == "ShareLock"
    assert mode["ALTER COLUMN ... TYPE bigint"] == "AccessExclusiveLock"
    assert mode["VALIDATE CONSTRAINT"] == "ShareUpdateExclusiveLock"
    assert les.sql("SELECT * FROM mig_small LIMIT 0").columns.tolist() == cols
    assert les.scalar("SELECT count(*) FROM pg_constraint WHERE conrelid = 'mig_small'::regclass "
                      "AND contype = 'c'") == 0


def test_rewrite_is_told_by_relfilenode(les):
    les.run("DROP TABLE IF EXISTS mig_rw")
    les.run("CREATE TABLE mig_rw AS SELECT g AS id, g::int AS n FROM generate_series(1, 1000) g")
    assert l8.rewrite(les.conn, "ALTER TABLE mig_rw ADD COLUMN a int DEFAULT 1", "mig_rw")["rewrite"] is False
    assert l8.rewrite(les.conn, "ALTER TABLE mig_rw ADD COLUMN b float DEFAULT random()", "mig_rw")["rewrite"] is True
    assert l8.rewrite(les.conn, "ALTER TABLE mig_rw ALTER COLUMN n TYPE bigint", "mig_rw")["rewrite"] is True
    les.run("DROP TABLE mig_rw")


def test_retry_succeeds_after_the_blocker_ends(les):
    from helpers.sessions import Sessions

    with Sessions(les, "A") as s:
        s.run("A", "BEGIN")
        s.run("A", "SELECT count(*) FROM mig_small")
        run = l8.ddl_with_retry(les, "ALTER TABLE mig_small ADD COLUMN t_retry int", lock_timeout="50ms",
                                on_fail=lambda n: s.run("A", "COMMIT") if n == 2 else None)
    assert run.ok and run.attempts == 3 and len(run.failures) == 2
    les.run("ALTER TABLE mig_small DROP COLUMN t_retry")


def test_plain_index_blocks_the_writer_concurrent_does_not(les):
    plain = l8.writer_during(les, les.conn, "CREATE INDEX mig_t_plain ON mig_plays (track_id, played_at)")
    conc = l8.writer_during(les, les.conn, "CREATE INDEX CONCURRENTLY mig_t_conc ON mig_plays (customer_id)")
    assert plain["error"] is None and conc["error"] is None
    assert plain["lock"] == "ShareLock" and conc["lock"] == "ShareUpdateExclusiveLock"
    # exact: no INSERT finishes while the ShareLock is granted (2 for the watcher's timestamps)
    assert plain["rows_in_lock"] <= 2, plain   # (no time ratio here: at tiny scale a build lasts ~50 ms)
    assert conc["rows_during"] >= 3
    les.run("DROP INDEX mig_t_plain, mig_t_conc")


def test_failed_concurrent_build_leaves_an_invalid_index(les):
    r = l8.writer_during(les, les.conn, "CREATE UNIQUE INDEX CONCURRENTLY mig_t_uq ON mig_plays (customer_id)")
    assert r["error"].startswith("23505")
    assert les.sql("SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = 'mig_t_uq'::regclass") \
        .values.tolist() == [[False, False]]   # failed in the first phase: not even maintained on writes
    les.run("DROP INDEX CONCURRENTLY mig_t_uq")


def test_backfill_counts_batches(les):
    les.run("ALTER TABLE mig_plays ADD COLUMN IF NOT EXISTS ms_bucket integer")
    r = l8.backfill(les.conn, 1, 1001, 100, progress=False)
    assert r["batches"] == 10 and r["longest"] >= r["median"]
    assert les.scalar("SELECT count(*) FROM mig_plays WHERE play_id BETWEEN 1 AND 1000 AND ms_bucket IS NULL") == 0


def test_squawk_flags_the_unsafe_statements():
    found = l8.squawk("CREATE INDEX i ON t (a);\nALTER TABLE t ALTER COLUMN c TYPE bigint;\n"
                      "ALTER TABLE t RENAME COLUMN a TO z;\n")
    assert (1, "require-concurrent-index-creation") in found
    assert (2, "changing-column-type") in found
    assert (3, "renaming-column") in found


def test_squawk_failure_is_one_clear_sentence(monkeypatch):
    from helpers.core.errors import WorkbookError

    class Proc:
        returncode, stdout, stderr = 2, "", "boom: cannot parse"

    monkeypatch.setattr(l8.subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(WorkbookError, match="boom"):
        l8.squawk("SELECT 1;\n")


def test_alembic_demo_shows_the_data_loss_and_leaves_nothing_behind(les):
    al = l8.alembic_demo(les)
    assert "drop_column" in al.rev2 and al.rev2_error.startswith("23502")
    assert al.tags_dropadd == (3, 0) and al.tags_rename == (3, 3)
    assert al.columns_after_downgrade == ["tag_id", "track_id", "tag"] and al.tags_after_downgrade == 3
    assert al.tables_after_base == [] and "ALTER TABLE mig_al_track_tag RENAME tag TO label" in al.offline_sql
    lines = al.offline_sql.splitlines()
    assert lines[0] == "SET lock_timeout = '2s';" and lines.count("COMMIT;") == 4   # a transaction per revision
    assert lines[lines.index("CREATE INDEX CONCURRENTLY mig_al_track_tag_track ON mig_al_track_tag (track_id);")
                 - 1] == "COMMIT;"


# ---------------------------------------------------------------------------------------------- exercises

@pytest.mark.parametrize("exercise", ["08.not_null_column", "08.index_online"])
def test_reference_solution_passes(les, exercise):
    ex = get(exercise)
    ex.setup(les)
    assert not ex.check(les).ok
    res = ex.check(les, solve(exercise, les.conn))
    assert res.ok, res.message


@pytest.mark.parametrize("answer,hint", [
    ("ALTER TABLE mig_ex ADD COLUMN plan text NOT NULL", "without a DEFAULT"),
    ("ALTER TABLE mig_ex ADD COLUMN plan text NOT NULL DEFAULT ('free' || left(random()::text, 0))", "rewritten"),
    ("ALTER TABLE mig_ex ADD COLUMN plan text;\nUPDATE mig_ex SET plan = 'free';\n"
     "ALTER TABLE mig_ex ALTER COLUMN plan SET NOT NULL;\nALTER TABLE mig_ex ALTER COLUMN plan SET DEFAULT 'free'",
     "rows the writer inserted after your UPDATE"),
    ("ALTER TABLE mig_ex ADD COLUMN plan text DEFAULT 'free';\nUPDATE mig_ex SET plan = 'free';\n"
     "ALTER TABLE mig_ex ALTER COLUMN plan SET NOT NULL", "UPDATEd"),
    ("ALTER TABLE mig_ex ADD COLUMN plan text DEFAULT 'free'", "accepts NULLs"),
    ("ALTER TABLE mig_ex ADD COLUMN plan text DEFAULT clock_timestamp()::text NOT NULL", "rewritten"),
    ("BEGIN;\nALTER TABLE mig_ex ADD COLUMN plan text NOT NULL DEFAULT 'free';\nSELECT pg_sleep(3);\nCOMMIT",
     "The writer waited"),
    ("", "empty"),
])
def test_not_null_wrong_answers_get_a_precise_hint(les, answer, hint):
    ex = get("08.not_null_column")
    ex.setup(les)
    res = ex.check(les, answer)
    assert not res.ok and hint in res.message, res.message
    assert les.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'mig_ex' "
                      "AND column_name = 'plan'") == 0   # set up again after a wrong answer


def test_not_null_other_correct_form_is_accepted(les):
    ex = get("08.not_null_column")
    ex.setup(les)
    before = les.scalar("SHOW lock_timeout")
    res = ex.check(les, "SET lock_timeout = '2s';\nALTER TABLE mig_ex ADD COLUMN IF NOT EXISTS plan text "
                        "DEFAULT 'free' NOT NULL;")
    assert res.ok, res.message
    assert les.scalar("SHOW lock_timeout") == before   # the answer ran on a connection of its own


def test_not_null_now_default_is_not_a_rewrite(les):
    ex = get("08.not_null_column")
    ex.setup(les)
    res = ex.check(les, "ALTER TABLE mig_ex ADD COLUMN plan text NOT NULL DEFAULT 'free';\n"
                        "ALTER TABLE mig_ex ADD COLUMN seen timestamptz NOT NULL DEFAULT now()")
    assert res.ok, res.message   # now() is stable: evaluated once, stored in the catalog


@pytest.mark.parametrize("answer", ["CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (customer_id, track_id)",
                                    "CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (customer_id DESC)"])
def test_index_other_correct_forms_are_accepted(les, answer):
    ex = get("08.index_online")
    ex.setup(les)
    res = ex.check(les, answer)
    assert res.ok, res.message


@pytest.mark.parametrize("answer,hint", [
    ("CREATE INDEX mig_ex_c ON mig_ex (customer_id)", "ShareLock"),
    ("BEGIN; CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (customer_id); COMMIT", "transaction block"),
    ("CREATE UNIQUE INDEX CONCURRENTLY mig_ex_c ON mig_ex (customer_id)", "INVALID"),
    ("CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (track_id)", "starts with customer_id"),
    ("CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (track_id, customer_id)", "starts with customer_id"),
    ("BEGIN;\nLOCK TABLE mig_ex IN SHARE MODE;\nSELECT pg_sleep(3);\nCOMMIT;\n"
     "CREATE INDEX CONCURRENTLY mig_ex_c ON mig_ex (customer_id)", "The writer waited"),
])
def test_index_wrong_answers_get_a_precise_hint(les, answer, hint):
    ex = get("08.index_online")
    ex.setup(les)
    res = ex.check(les, answer)
    assert not res.ok and hint in res.message, res.message


def test_setup_only_touches_its_own_table(les):
    before = les.scalar("SELECT count(*) FROM plays")
    get("08.index_online").setup(les)
    assert les.scalar("SELECT count(*) FROM plays") == before
