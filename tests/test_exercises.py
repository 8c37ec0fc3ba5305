"""Every toolkit exercise: its check fails on the starting state and passes after the reference solution.

Lesson modules register their own exercises (ids ``NN.*``), which need a lesson database with the
loaded data; their lesson tests run them. Here only the ``toolkit.*`` ones are taken, so the list
does not depend on which other test modules happened to be imported first.
"""
from __future__ import annotations

import pytest

from helpers.lessons import solutions
from helpers.exercises import NO_ANSWER, CheckResult, Exercise, all_exercises, get, register

EXERCISES = [ex for ex in all_exercises() if ex.id.startswith("toolkit.")]
IDS = [ex.id for ex in EXERCISES]


def test_registry():
    assert len(IDS) == len(set(IDS)) >= 3
    assert all(solutions.has_solution(i) for i in IDS), "every exercise needs a reference solution"
    assert get(IDS[0]) is EXERCISES[0]
    with pytest.raises(ValueError, match="already registered"):
        register(Exercise(IDS[0], "dup", "dup", lambda c: None, lambda c, a: CheckResult(True, "")))


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_check_fails_at_start_and_passes_after_the_solution(module_db, ex):
    ex.setup(module_db)
    start = ex.check(module_db, ex.starting_answer)
    assert isinstance(start, CheckResult) and not start.ok
    assert str(start).startswith("Not yet. ") and len(start.message) > 20  # says what is wrong
    answer = solutions.solve(ex.id, module_db)
    done = ex.check(module_db, answer)
    assert done.ok, done.message
    assert str(done).startswith("Right. ")
    ex.setup(module_db)  # setup brings back the starting state
    assert not ex.check(module_db, ex.starting_answer).ok


@pytest.fixture(scope="module")
def started(module_db):
    """Every exercise in its starting state (the test above restores it after solving)."""
    for ex in EXERCISES:
        ex.setup(module_db)
    return module_db


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
@pytest.mark.parametrize("answer", [NO_ANSWER, None, ..., "nonsense", 3, 2.5, True, ["SELECT 1"], {"a": 1}])
def test_wrong_answers_get_a_message_not_a_crash(started, ex, answer):
    result = ex.check(started, answer)
    assert not result.ok and result.message


def test_answer_checks_say_what_is_wrong(module_db):
    pages = get("toolkit.count_pages")
    pages.setup(module_db)
    assert pages.check(module_db, "12").message.startswith("The answer should be a whole number such as 123, not a str")
    assert "too low" in pages.check(module_db, 1).message
    assert "too high" in pages.check(module_db, 10**9).message
    import numpy as np
    import pandas as pd

    right = module_db.execute("SELECT (pg_relation_size('ex_pages') / 8192)::int").fetchone()[0]
    for form in (np.int64(right), np.int32(right), pd.array([right], dtype="Int64")[0], float(right),
                 pd.DataFrame({"n": [right]})):
        assert pages.check(module_db, form).ok, type(form)  # any integral number is an int
    assert "not a float" in pages.check(module_db, right + 0.5).message
    assert "too low" in pages.check(module_db, np.int64(1)).message
    counts = get("toolkit.albums_per_artist")
    counts.setup(module_db)
    inner = "SELECT a.name, count(*) FROM ex_artist a JOIN ex_album b ON b.artist_id = a.id GROUP BY a.name"
    assert "LEFT JOIN" in counts.check(module_db, inner).message
    star = "SELECT a.name, count(*) FROM ex_artist a LEFT JOIN ex_album b ON b.artist_id = a.id GROUP BY a.id, a.name"
    assert "show 1 instead of 0: count(*) counts the row the LEFT JOIN makes" in counts.check(module_db, star).message
    swapped = ("SELECT count(b.id), a.name FROM ex_artist a LEFT JOIN ex_album b ON b.artist_id = a.id "
               "GROUP BY a.id, a.name")
    assert "other way round" in counts.check(module_db, swapped).message
    none = counts.check(module_db, NO_ANSWER)
    assert not none.answered and none.message.startswith("There is no answer yet") and "LEFT" not in none.message
    assert counts.check(module_db, "SELEC 1").message == 'The query failed: syntax error at or near "SELEC"'
    assert "read-only" in counts.check(module_db, "DELETE FROM ex_album").message
    assert module_db.execute("SELECT count(*) FROM ex_album").fetchone()[0] > 0  # the answer changed nothing
    assert "single SQL query" in counts.check(module_db, "SELECT 1; DROP TABLE ex_album").message
    lookup = get("toolkit.index_lookup")
    lookup.setup(module_db)
    untouched = lookup.check(module_db)  # before any change: no hint, only what to do
    assert not untouched.answered and "Seq Scan" not in untouched.message and "customer_id" not in untouched.message
    module_db.execute("CREATE INDEX ex_orders_amount_idx ON ex_orders (amount)")  # an index, on the wrong column
    assert "Seq Scan on ex_orders" in lookup.check(module_db).message


def test_check_without_setup_explains(module_db):
    module_db.execute("DROP TABLE IF EXISTS ex_orders")
    result = get("toolkit.index_lookup").check(module_db)
    assert not result.ok and "did you run the setup cell?" in result.message


def test_setup_and_check_roll_back_a_failed_transaction_first(module_db, capsys, caplog):
    import psycopg

    from helpers.db import FAILED_TRANSACTION_NOTE

    ex = get("toolkit.count_pages")
    for step in ("setup", "check"):
        module_db.execute("BEGIN")
        with pytest.raises(psycopg.Error):
            module_db.execute("SELECT 1/0")
        result = ex.setup(module_db) if step == "setup" else ex.check(module_db, 1)
        out = capsys.readouterr().out
        assert out.splitlines()[0] == FAILED_TRANSACTION_NOTE, out
        assert module_db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if step == "check":
            assert "too low" in result.message and "setup cell" not in result.message
    assert "_pg3_" not in caplog.text


def test_quiet_until_changed_is_opt_in(module_db):
    """Lessons written before issue 22 keep their check's first message; 00-06 (and new lessons) opt in."""
    from dataclasses import replace

    quiet = get("toolkit.index_lookup")
    assert quiet.quiet_until_changed
    loud = replace(quiet, id="toolkit.index_lookup_loud", quiet_until_changed=False)  # not registered
    loud.setup(module_db)
    assert "Seq Scan on ex_orders" in loud.check(module_db).message and loud.check(module_db).answered
    quiet.setup(module_db)
    first = quiet.check(module_db)
    assert not first.answered and str(first).startswith("Not yet. There is no answer yet (not answered yet)")
    module_db.execute("CREATE INDEX ex_orders_customer_id_idx ON ex_orders (customer_id)")
    assert quiet.check(module_db).ok
