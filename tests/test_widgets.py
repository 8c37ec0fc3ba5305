"""The before/after widget and the scale explorer, driven headlessly with button.click()."""
from __future__ import annotations

import pytest

from helpers.core.errors import WorkbookError
from helpers.plans import has_seq_scan, uses_index
from helpers.widgets import BeforeAfter, ScaleExplorer

from test_timing import sanitize  # tests/ is on sys.path (pytest rootdir-relative import)

QUERY = "SELECT * FROM w WHERE k = %s"


@pytest.fixture
def db(module_db):
    module_db.execute("DROP TABLE IF EXISTS w")
    module_db.execute(
        "CREATE TABLE w AS SELECT g AS id, g % 2000 AS k, 'row ' || g AS pad FROM generate_series(1, 60000) AS g")
    module_db.execute("VACUUM ANALYZE w")
    yield module_db
    module_db.execute("DROP TABLE w")


def indexes(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'w' ORDER BY 1")]


def texts(widget) -> list[str]:
    return [o["text"] for o in widget.out.outputs if o["output_type"] == "stream"]


def test_run_button_measures_applies_and_reports(db):
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(42,), repeat=5)
    assert w.revert_button.disabled and w.result is None
    w.run_button.click()
    assert w.last_error is None and w.applied and not w.revert_button.disabled
    out = w.out.outputs
    assert out[0]["output_type"] == "stream" and out[1]["output_type"] == "display_data"
    assert "image/png" in out[1]["data"]
    text = out[0]["text"]
    r = w.result
    assert text == r.text()
    assert "Change: CREATE INDEX w_k_idx ON w (k)" in text and "params: (42,)" in text
    assert "- Seq Scan on w" in text and "using w_k_idx" in text
    assert has_seq_scan(r.before_plan, "w") and uses_index(r.after_plan, "w_k_idx")
    assert r.before.rows_returned == r.after.rows_returned == 30
    assert r.before.pages > 5 * r.after.pages  # the seq scan reads the whole table, the index ~30 pages
    assert indexes(db) == ["w_k_idx"]
    w.revert_button.click()
    assert indexes(db) == [] and not w.applied and w.revert_button.disabled
    assert texts(w) == ["Reverted: the database is back to the state before the change.\n"]


def test_printed_text_is_stable_under_the_sanitizer(db):
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(42,), repeat=4)
    first = w.run().text()
    second = w.run().text()  # reverts the applied change first, then measures again
    assert sanitize(first) == sanitize(second)
    assert indexes(db) == ["w_k_idx"]


@pytest.mark.timing
def test_ratio_with_a_wide_margin(db):
    r = BeforeAfter(db, "SELECT * FROM w WHERE id = %s", change="CREATE INDEX ON w (id)", params=(777,)).run()
    assert r.ratio > 3 and r.comparison.server_ratio > 3  # typically 30-100x


@pytest.mark.parametrize("bad, message", [
    ("CREATE INDX oops ON w (k)", 'syntax error at or near "INDX"'),
    ("CREATE INDEX w_k_idx ON w (k); SELECT 1/0", "division by zero"),
    ("CREATE INDEX w_k_idx ON w (nope)", 'column "nope" does not exist'),
])
def test_broken_change_shows_one_line_and_leaves_nothing(db, bad, message):
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(1,), repeat=3)
    w.change_box.value = bad
    w.run_button.click()
    assert texts(w) == [f"Error: The change failed and was rolled back, nothing is applied: {message}\n"]
    assert not w.applied and w.revert_button.disabled and indexes(db) == []
    w.change_box.value = "CREATE INDEX w_k_idx ON w (k)"  # the widget stays usable
    w.run_button.click()
    assert w.last_error is None and indexes(db) == ["w_k_idx"]


def test_broken_query_changes_nothing(db):
    w = BeforeAfter(db, "SELECT * FROM w WHERE kk = 1", change="CREATE INDEX w_k_idx ON w (k)", repeat=3)
    w.run_button.click()
    assert texts(w) == ['Error: The query failed, nothing was changed: column "kk" does not exist\n']
    assert indexes(db) == [] and not w.applied
    with pytest.raises(WorkbookError):
        w.run()


def test_callable_change_concurrently_and_explicit_revert(db):
    def add_index(conn):
        """Index w.k."""
        conn.execute("CREATE INDEX w_k_idx ON w (k)")

    w = BeforeAfter(db, QUERY, change=add_index, revert="DROP INDEX w_k_idx", params=(3,), repeat=3)
    assert w.change_box.value == "add_index(): Index w.k." and w.change_box.disabled
    r = w.run()
    assert r.change == "add_index(): Index w.k." and uses_index(r.after_plan, "w_k_idx")
    w.revert()
    assert indexes(db) == []
    # CREATE INDEX CONCURRENTLY cannot run in a transaction: it is retried on its own
    w2 = BeforeAfter(db, QUERY, change="CREATE INDEX CONCURRENTLY ON w (k)", params=(3,), repeat=3)
    w2.run_button.click()
    assert w2.last_error is None and indexes(db) == ["w_k_idx"]  # the default name
    w2.revert_button.click()
    assert indexes(db) == []


def test_change_that_cannot_be_reverted_says_so(db):
    w = BeforeAfter(db, QUERY, change="ANALYZE w", params=(3,), repeat=3)
    w.run_button.click()
    assert w.applied
    w.revert_button.click()
    assert texts(w) == ["Error: This change cannot be undone automatically (it created no index): "
                        "pass revert=... to BeforeAfter.\n"]
    assert w.applied and not w.revert_button.disabled
    w.change_box.value = ""
    with pytest.raises(WorkbookError, match="no change"):
        w.run()


def test_scale_explorer_small(db):
    x = ScaleExplorer(db, sizes=(1_000, 5_000, 50_000), warmup=1, repeat=3)
    x.run_button.click()
    assert x.last_error is None and x.status.value == "Measured 1,000, 5,000, 50,000 rows."
    r = x.result
    text = texts(x)[0]
    assert text == r.text()
    assert x.out.outputs[1]["output_type"] == "display_data"
    # deterministic: the seq scan's pages grow with the table, the index lookup's stay a handful
    pb = [m.pages for m in r.before]
    pa = [m.pages for m in r.after]
    assert pb[0] < pb[1] < pb[2] and pb[2] > 20 * pb[0]
    assert max(pa) <= 5
    assert all("Seq Scan" in m.plan.node_types() for m in r.before[1:])
    assert all(m.plan.index_names() for m in r.after[1:])
    assert "   50,000: pages" in text
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'scale_explorer'").fetchone()[0] == 0


def test_scale_explorer_bad_template(db):
    x = ScaleExplorer(db, query="SELECT * FROM {table} WHERE nope = 1", sizes=(1_000,), repeat=1)
    x.run_button.click()
    assert texts(x) == ['Error: The scale explorer stopped: column "nope" does not exist\n']
    assert x.status.value == "Stopped by the error below."
    x2 = ScaleExplorer(db, query="SELECT '{x}' FROM {table}", sizes=(1_000,), repeat=1)
    with pytest.raises(WorkbookError, match="placeholder"):
        x2.run()


def test_unexpected_errors_stay_in_the_widget(db):
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(1, 2), repeat=3)  # one param too many
    w.run_button.click()
    assert len(texts(w)) == 1 and texts(w)[0].startswith("Error: ") and texts(w)[0].count("\n") == 1
    assert not w.applied and indexes(db) == []


def test_failed_concurrent_index_leaves_no_invalid_index(db):
    db.execute("INSERT INTO w VALUES (1, 1, 'duplicate id')")
    w = BeforeAfter(db, QUERY, change="CREATE UNIQUE INDEX CONCURRENTLY w_id_key ON w (id)", params=(1,), repeat=3)
    w.run_button.click()
    assert texts(w)[0].startswith("Error: The change failed and was rolled back, nothing is applied: could not create "
                                  "unique index")
    assert indexes(db) == [] and not w.applied


# ---------------------------------------------------------------- issue 22: stuck transactions, a reset, a literal %

def _stick(conn) -> None:
    import psycopg

    conn.execute("BEGIN")
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT 1/0")


def test_widgets_roll_back_a_failed_transaction_first(db, capsys, caplog):
    import psycopg

    from helpers.db import FAILED_TRANSACTION_NOTE

    _stick(db)
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(42,), repeat=3)
    w.run_button.click()
    assert w.last_error is None and w.applied
    assert texts(w)[0].startswith(FAILED_TRANSACTION_NOTE)
    _stick(db)
    w.revert_button.click()
    assert w.last_error is None and not w.applied and indexes(db) == []
    _stick(db)
    r = ScaleExplorer(db, sizes=(1_000, 3_000), repeat=3).run()
    assert len(r.after) == 2
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert "_pg3_" not in caplog.text and "current transaction is aborted" not in capsys.readouterr().out


def test_a_widget_from_before_a_lesson_reset_says_to_rerun_its_cell(db):
    from helpers import db as dbmod
    from helpers.widgets import CLOSED

    conn = dbmod.connect(db.info.dbname)
    w = BeforeAfter(conn, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(42,), repeat=3)
    x = ScaleExplorer(conn, sizes=(1_000, 2_000), repeat=3)
    # a reset drops the lesson database WITH (FORCE): the server ends the old session under the widget
    db.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    w.run_button.click()
    assert w.last_error == CLOSED and "re-run this widget's cell" in CLOSED
    x.run_button.click()
    assert x.last_error == CLOSED
    conn.close()
    w.run_button.click()
    assert w.last_error == CLOSED and indexes(db) == []


def test_a_literal_percent_with_parameters_gets_the_tip(db):
    w = BeforeAfter(db, "SELECT * FROM w WHERE pad LIKE 'row 1%' AND k = %s", params=(42,),
                    change="CREATE INDEX w_k_idx ON w (k)", repeat=3)
    w.run_button.click()
    assert "only '%s'" in w.last_error and "as %%" in w.last_error and indexes(db) == []


def test_the_scale_explorer_legend_names_the_change_and_the_chart_explains_iqr(db):
    r = ScaleExplorer(db, sizes=(1_000, 2_000), repeat=3).run()
    legend = [t.get_text() for t in r.figure().axes[0].get_legend().get_texts()]
    assert legend == ["without CREATE INDEX ON t (id)", "with CREATE INDEX ON t (id)"]
    w = BeforeAfter(db, QUERY, change="CREATE INDEX w_k_idx ON w (k)", params=(42,), repeat=3)
    label = w.run().figure().axes[0].get_xlabel()
    assert "IQR, the middle half of the runs" in label
    w.revert()
