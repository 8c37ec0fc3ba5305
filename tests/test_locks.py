"""locks_taken reads the locks a statement holds from pg_locks, strongest per relation, and keeps nothing."""
from __future__ import annotations

import pytest

from helpers.locks import LOCK_MODES, locks_taken


@pytest.fixture(scope="module")
def tables(module_db):
    module_db.execute("CREATE TABLE lk_parent (id int PRIMARY KEY); CREATE TABLE lk_child (id int, pid int)")
    return module_db


def test_documented_lock_levels(tables):
    conn = tables
    # ALTER TABLE ... ADD FOREIGN KEY: SHARE ROW EXCLUSIVE on both tables (docs, ALTER TABLE "Notes")
    fk = locks_taken(conn, "ALTER TABLE lk_child ADD FOREIGN KEY (pid) REFERENCES lk_parent", ("lk_child", "lk_parent"))
    assert fk == {"lk_child": "ShareRowExclusiveLock", "lk_parent": "ShareRowExclusiveLock"}
    # ADD CHECK: ACCESS EXCLUSIVE; a plain SELECT: ACCESS SHARE
    assert locks_taken(conn, "ALTER TABLE lk_child ADD CHECK (pid > 0)", ("lk_child",)) == \
        {"lk_child": "AccessExclusiveLock"}
    assert locks_taken(conn, "SELECT * FROM lk_child", ("lk_child",)) == {"lk_child": "AccessShareLock"}


def test_nothing_is_kept_and_the_order_is_the_documented_one(tables):
    conn = tables
    locks_taken(conn, "ALTER TABLE lk_child ADD COLUMN extra int")
    assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'lk_child' "
                        "AND column_name = 'extra'").fetchone()[0] == 0
    assert LOCK_MODES[0] == "AccessShareLock" and LOCK_MODES[-1] == "AccessExclusiveLock" and len(LOCK_MODES) == 8
