"""Lesson 12: dumps, restores, PITR machinery, and the exercises (fail at start, pass after the solution,
refuse the classic wrong answers with a hint that names the mistake)."""
from __future__ import annotations

import pytest

from helpers import db as hdb
from helpers import private
from helpers.exercises import NO_ANSWER, get
from helpers.lessons import backup as L
from helpers.lessons import solutions
import helpers.lessons.solutions.backup  # noqa: F401  (registers the reference solutions)

pytestmark = pytest.mark.skipif(private.available() is not None, reason="no embedded PostgreSQL binaries")


@pytest.fixture(scope="module")
def les(tiny_template):
    with hdb.temporary_lesson("t12_lesson") as lesson:
        yield lesson
    for srv in private.running():
        srv.stop()


@pytest.fixture(scope="module")
def work():
    with private.spawn("t12_work") as srv:
        yield srv


def test_size_and_toc(les, work):
    assert L.size(5 << 20) == "~5.0 MB" and L.size(2048) == "~2 kB"
    seconds = L.dump(les, work.root / "x.dump")
    assert seconds > 0
    kinds = L.toc_kinds(work.root / "x.dump")
    assert kinds["TABLE"] == kinds["TABLE DATA"] == len(L.table_rows(les.conn))
    name, _ = L.restore(les, work.root / "x.dump", "t12copy", jobs=2)
    try:
        assert L.restored_summary(les, name)["by table"] == L.table_rows(les.conn)
    finally:
        L.drop_restored(les, name)
    with pytest.raises(Exception, match="pg_restore failed|does not exist|no data"):
        L.restore_table_as(les, work.root / "x.dump", "no_such_table", "t12_side")


def test_pitr_to_an_lsn_and_the_waldump(les):
    primary, archive = L.store_primary(les, "t12_primary")
    try:
        base, _ = L.base_backup(primary, "base")
        before = L.counts(primary)
        acc = L.accident(primary)
        L.wait_archived(primary)
        kinds, _ = L.waldump_counts(archive, acc.lsn_before, acc.commit_lsn, acc.xid)
        data = {k: v for k, v in kinds.items() if not k.startswith("XLOG/")}  # FPI_FOR_HINT may carry the xid
        assert data == {"Heap/DELETE": acc.rows, "Transaction/COMMIT": 1} and acc.rows == before["invoice_line"]
        summary = L.wal_summary(archive)
        assert int(summary.iloc[0]["xid"]) == acc.xid and int(summary.iloc[0]["deletes"]) == acc.rows
        srv, _ = L.recover(archive, base, "t12_rec", target={"recovery_target_lsn": acc.lsn_before})
        assert L.counts(srv) == before
        srv.stop()
    finally:
        primary.stop()


def test_restore_lines_exercise(les):
    ex = get("12.restore_lines")
    assert ex.lesson == "12_backup_restore" and solutions.has_solution(ex.id)
    ex.setup(les)
    start = ex.check(les)
    assert not start.ok and not start.answered and "restore_table_as" not in start.message  # no hint before a try
    les.run("INSERT INTO ex_invoice_line SELECT * FROM ex_invoice_line WHERE false")  # a try that changes nothing
    les.run("CREATE INDEX ex_invoice_line_try_idx ON ex_invoice_line (invoice_id)")    # a change, not the fix
    tried = ex.check(les)
    assert not tried.ok and "still missing" in tried.message and "restore_table_as" in tried.message
    les.run("DROP INDEX ex_invoice_line_try_idx")
    solutions.solve(ex.id, les.conn)
    done = ex.check(les)
    assert done.ok, done.message
    # classic mistake 1: bring back every row of the dump that is missing (resurrects the refunded invoice)
    ex.setup(les)
    L.restore_table_as(les, L.exercise_dump_path(les.conn), "ex_invoice_line", "ex_restored")
    les.run("""INSERT INTO ex_invoice_line SELECT r.* FROM ex_restored r
               WHERE NOT EXISTS (SELECT 1 FROM ex_invoice_line l WHERE l.invoice_line_id = r.invoice_line_id)""")
    msg = ex.check(les).message
    assert "too many" in msg and "refunded" in msg
    # classic mistake 2: replace the table with the dump (loses the day's 25 new lines)
    les.run("TRUNCATE ex_invoice_line")
    les.run("INSERT INTO ex_invoice_line SELECT * FROM ex_restored")
    msg = ex.check(les).message
    assert "0 of the 25" in msg and "replaced the table" in msg
    # any correct form passes: a CTE, restoring by the condition directly
    ex.setup(les)
    L.restore_table_as(les, L.exercise_dump_path(les.conn), "ex_invoice_line", "side")
    les.run("""WITH lost AS (SELECT * FROM side WHERE quantity > 1 EXCEPT SELECT * FROM ex_invoice_line)
               INSERT INTO ex_invoice_line SELECT * FROM lost""")
    assert ex.check(les).ok
    ex.setup(les)
    assert not ex.check(les).ok  # setup brings back the starting state


def test_pitr_exercise(les):
    ex = get("12.pitr")
    ex.setup(les)
    sc = L.exercise_scenario(les)
    assert ex.check(les, NO_ANSWER).message.startswith("There is no answer yet")
    assert "PrivateServer" in ex.check(les, "0/3000000").message
    # classic mistake 1: the base backup alone
    only, _ = L.recover(None, sc.base, "ex12_only")
    msg = ex.check(les, only).message
    assert "written after the base backup are missing" in msg
    only.stop()
    assert "not running" in ex.check(les, only).message
    # classic mistake 2: replay everything archived, accident included
    everything, _ = L.recover(sc.archive, sc.base, "ex12_all")
    assert "replayed the accident" in ex.check(les, everything).message
    everything.stop()
    # classic mistake 3: a target, but recovery left paused
    xid = int(L.wal_summary(sc.archive).iloc[0]["xid"])
    paused, _ = L.recover(sc.archive, sc.base, "ex12_paused", action="pause",
                          target={"recovery_target_xid": str(xid), "recovery_target_inclusive": "off"})
    assert "still in recovery" in ex.check(les, paused).message
    paused.stop()
    answer = solutions.solve(ex.id, les.conn)
    done = ex.check(les, answer)
    assert done.ok, done.message
    answer.stop()
    assert "not running" in ex.check(les, answer).message


@pytest.mark.parametrize("exercise_id", ["12.restore_lines", "12.pitr"])
def test_exercise_without_setup_says_so(les, exercise_id):
    les.run("DROP TABLE IF EXISTS ex_expected, ex_pitr_expected")
    ex = get(exercise_id)
    with private.spawn("t12_dummy") as dummy:
        result = ex.check(les, dummy if ex.answer_kind else NO_ANSWER)
    assert not result.ok and "setup" in result.message


def test_recovery_target_beyond_the_archive_says_so(les):
    ex = get("12.pitr")
    if not any(s.name == "ex12_primary" for s in private.running()):
        ex.setup(les)
    sc = L.exercise_scenario(les)
    with pytest.raises(Exception, match="recovery target|did not start"):
        L.recover(sc.archive, sc.base, "ex12_far", target={"recovery_target_lsn": "FF/0"})


def test_measured_sizes_are_masked_by_the_sanitizer():
    import configparser
    import re
    from pathlib import Path

    cp = configparser.ConfigParser(interpolation=None)
    cp.read(Path(__file__).with_name("nbval_sanitize.cfg"), encoding="utf-8")
    text = f"dump {L.size(20_600_000)}, backup {L.size(83_000_000)}, manifest {L.size(300_000)}; table 58.1 MB"
    for section in cp.sections():
        text = re.sub(cp[section]["regex"], cp[section]["replace"], text)
    assert text == "dump ~<size>, backup ~<size>, manifest ~<size>; table 58.1 MB"
