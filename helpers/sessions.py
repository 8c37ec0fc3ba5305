"""Named live sessions stepped in an order the notebook controls (introduced in 07_transactions, reused by 08).

Each session is its own connection driven by its own thread, so one session can wait on a lock while the notebook
goes on with another::

    with Sessions(db, "A", "B") as s:
        s.run("A", "BEGIN")
        s.run("A", "UPDATE stock SET qty = qty - 1 WHERE id = 1")
        s.run("B", "UPDATE stock SET qty = qty - 1 WHERE id = 1")   # returns once B is SEEN waiting for A
        s.blockers("B")                                             # ['A']
        s.run("A", "COMMIT")
        s.wait("B")                                                 # B's UPDATE finishes now
        print(s.timeline())

:meth:`Sessions.run` returns when the statement has finished, or when the server reports the session waiting on a
lock (``pg_blocking_pids`` is not empty): it polls the server, it never sleeps "long enough". If neither happens
within ``wait_timeout`` seconds the statement is cancelled and one clear sentence is raised. Every connection has a
``lock_timeout`` and a ``statement_timeout`` so nothing can hang, and :meth:`Sessions.close` (or leaving the ``with``)
closes them all. Connections are in autocommit mode: ``BEGIN`` and ``COMMIT`` are written out, as in psql.

The timeline (:meth:`Sessions.timeline`) has one row per step and one column per session; it contains only what the
step order decides (statements, values, row counts, SQLSTATEs), never times or pids, so it is deterministic.
"""
from __future__ import annotations

import contextlib
import queue
import re
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import psycopg

from helpers.core.errors import WorkbookError

__all__ = ["Sessions", "Step", "blocking_pids", "wait_until_blocked", "connect_like"]

_STOP = object()


@dataclass
class Step:
    """One statement sent by one session, and what came of it."""

    n: int
    session: str
    sql: str
    state: str = "running"           # running | done | error | resumed; written only by the session's thread
    rows: list[tuple] | None = None  # rows returned, if the statement returns rows
    statusmessage: str = ""          # e.g. "UPDATE 1", "COMMIT", "ROLLBACK"
    rowcount: int = -1
    sqlstate: str | None = None
    error: str | None = None
    detail: str | None = None        # the error's DETAIL line (may hold pids and xids: not in the timeline)
    blocked_by: list[str] = field(default_factory=list)  # who it waited for, when it was seen waiting
    waited: bool = False
    notices: list[str] = field(default_factory=list)
    done_at: int | None = None       # the step number at which a waiting statement was seen finished
    closed: bool = False             # the server closed the connection (e.g. a session timeout)

    @property
    def value(self) -> Any:
        """The first column of the first row (None if there is none)."""
        return self.rows[0][0] if self.rows else None

    @property
    def status(self) -> str:
        """running | waiting (seen waiting on a lock, not finished yet) | done | error | resumed."""
        if self.state == "running":
            return "waiting" if self.waited else "running"
        return self.state

    @property
    def ok(self) -> bool:
        return self.state == "done"

    def outcome(self) -> str:
        """What the statement returned, in a few deterministic words."""
        if self.closed:
            return "ERROR: the server closed the connection"
        if self.status == "error":
            return f"ERROR {self.sqlstate}: {self.error}"
        if self.status in ("waiting", "running"):
            return "waits for " + (", ".join(self.blocked_by) or "a lock")
        if self.rows is not None:
            if len(self.rows) == 1 and len(self.rows[0]) == 1 and self.rows[0][0] in (None, ""):
                return "→ (no value)" if self.rows[0][0] is None else "OK"
            if len(self.rows) == 1 and len(self.rows[0]) == 1:
                return f"→ {self.rows[0][0]}"
            if len(self.rows) == 1:
                return "→ (" + ", ".join(str(v) for v in self.rows[0]) + ")"
            return f"→ {len(self.rows)} rows"
        return self.statusmessage or "OK"


def connect_like(source: Any, app: str) -> psycopg.Connection:
    """A new autocommit connection to the same database as ``source`` (a Lesson or a psycopg connection)."""
    if hasattr(source, "dbname") and hasattr(source, "target"):
        from helpers.db import connect

        return connect(source.dbname, tgt=source.target, app=app)
    conn = getattr(source, "conn", source)
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    params["application_name"] = app
    params.setdefault("connect_timeout", 5)
    return psycopg.connect(**params, autocommit=True)


def blocking_pids(monitor: psycopg.Connection, pid: int) -> list[int]:
    """The pids that block ``pid`` from getting a lock it waits for (empty when it is not waiting)."""
    return list(monitor.execute("SELECT pg_blocking_pids(%s)", (pid,)).fetchone()[0] or [])


def wait_until_blocked(monitor: psycopg.Connection, pid: int, done: Callable[[], bool], *, timeout: float = 10.0,
                       what: str = "The statement") -> list[int]:
    """Poll until backend ``pid`` is seen waiting on a lock (returns its blockers) or ``done()`` (returns [])."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if done():
            return []
        pids = blocking_pids(monitor, pid)
        if pids:
            return pids
        if done():
            return []
        if time.monotonic() > deadline:
            raise WorkbookError(f"{what} neither finished nor started waiting on a lock within {timeout:g} s.")
        time.sleep(delay)  # polling interval only: the state is read from the server, never assumed
        delay = min(delay * 2, 0.02)


class _Session:
    def __init__(self, name: str, conn: psycopg.Connection) -> None:
        self.name = name
        self.conn = conn
        self.pid = conn.info.backend_pid
        self.jobs: queue.Queue = queue.Queue()
        self.current: Step | None = None
        self.finished = threading.Event()
        self.finished.set()
        self.dead = False
        self._notices: list[str] = []
        conn.add_notice_handler(lambda d: self._notices.append((d.message_primary or "").strip()))
        self.thread = threading.Thread(target=self._loop, name=f"session-{name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            step, params = job
            self._notices.clear()
            try:
                cur = self.conn.execute(step.sql, params)
                step.rows = cur.fetchall() if cur.description is not None else None
                step.statusmessage = cur.statusmessage or ""
                step.rowcount = cur.rowcount
                step.state = "done"
            except psycopg.Error as exc:
                step.sqlstate = exc.sqlstate
                diag = exc.diag
                step.error = (diag.message_primary or str(exc).strip().splitlines()[-1] or type(exc).__name__).strip()
                step.detail = diag.message_detail
                if self.conn.closed:
                    self.dead = step.closed = True
                step.state = "error"
            except Exception as exc:  # a bug must not leave run() polling until its timeout
                step.error, step.state = f"{type(exc).__name__}: {exc}", "error"
            finally:
                step.notices = list(self._notices)
                self.finished.set()


class Sessions:
    """Named sessions A, B, ... on their own connections, each driven by its own thread (lesson 07, 08).

    ``source`` is a Lesson (``db``) or a psycopg connection whose database the sessions connect to.
    ``lock_timeout`` and ``statement_timeout`` are set on every session; ``wait_timeout`` bounds how long
    :meth:`run` and :meth:`wait` poll. ``settings`` are extra ``SET`` parameters for every session.
    """

    def __init__(self, source: Any, *names: str, lock_timeout: str = "20s", statement_timeout: str = "30s",
                 wait_timeout: float = 15.0, settings: dict[str, str] | None = None) -> None:
        if not names:
            names = ("A", "B")
        if len(set(names)) != len(names):
            raise ValueError("Session names must be different.")
        self.source = source
        self.wait_timeout = wait_timeout
        self.steps: list[Step] = []
        self._sessions: dict[str, _Session] = {}
        self._others: dict[int, str] = {}
        self.monitor: psycopg.Connection | None = None
        try:
            self.monitor = connect_like(source, "pdw:sessions-monitor")
            for name in names:
                conn = connect_like(source, f"pdw:session-{name}")
                self._sessions[name] = _Session(name, conn)
                conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                             (lock_timeout, statement_timeout))
                for key, value in (settings or {}).items():
                    conn.execute("SELECT set_config(%s, %s, false)", (key, value))
            main = getattr(getattr(source, "conn", source), "info", None)
            if main is not None:
                self._others[main.backend_pid] = "db"
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Roll back and close every session (a session still waiting is cancelled first)."""
        for s in self._sessions.values():
            with contextlib.suppress(Exception):
                if not s.finished.is_set():
                    s.conn.cancel_safe(timeout=2)
                    s.finished.wait(5)
            s.jobs.put(_STOP)
            with contextlib.suppress(Exception):
                s.conn.close()
            s.thread.join(timeout=5)
        if self.monitor is not None:
            # closing a connection returns before the server process has ended (and dropped its snapshot and
            # locks): wait until it has, so the next cell sees the sessions gone
            with contextlib.suppress(Exception):
                pids = [s.pid for s in self._sessions.values()]
                deadline = time.monotonic() + 5
                while (self.monitor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                                            (pids,)).fetchone()[0] and time.monotonic() < deadline):
                    time.sleep(0.005)  # polling the server
            with contextlib.suppress(Exception):
                self.monitor.close()
            self.monitor = None

    # ------------------------------------------------------------------ stepping

    @property
    def names(self) -> list[str]:
        return list(self._sessions)

    def pid(self, name: str) -> int:
        return self._session(name).pid

    def _session(self, name: str) -> _Session:
        try:
            return self._sessions[name]
        except KeyError:
            raise WorkbookError(f"There is no session {name!r}; the sessions are {', '.join(self._sessions)}.") \
                from None

    def name_of(self, pid: int) -> str:
        for s in self._sessions.values():
            if s.pid == pid:
                return s.name
        return self._others.get(pid, "another connection")

    def run(self, name: str, sql: str, params: Any = None) -> Step:
        """Send ``sql`` on session ``name``; return when it finished or when it is seen waiting on a lock."""
        s = self._session(name)
        if self.monitor is None:
            raise WorkbookError("These sessions are closed; create new ones.")
        if s.dead:
            raise WorkbookError(f"Session {name}'s connection was closed by the server; create new sessions.")
        if not s.finished.is_set():
            raise WorkbookError(f"Session {name} is still waiting for its previous statement; "
                                f"call wait({name!r}) after releasing the lock it waits for.")
        step = Step(n=len(self.steps) + 1, session=name, sql=sql)
        self.steps.append(step)
        s.current = step
        s.finished.clear()
        s.jobs.put((step, params))
        try:
            pids = wait_until_blocked(self.monitor, s.pid, s.finished.is_set, timeout=self.wait_timeout,
                                      what=f"Session {name}'s statement")
        except WorkbookError:
            self._cancel(s)
            raise
        if pids:  # seen waiting (it may have finished since: it did wait, and the timeline says so)
            step.blocked_by = sorted({self.name_of(p) for p in pids})
            step.waited = True
        return step

    def _cancel(self, s: _Session) -> None:
        with contextlib.suppress(Exception):
            s.conn.cancel_safe(timeout=2)
        s.finished.wait(5)

    def wait(self, name: str, timeout: float | None = None) -> Step:
        """Wait until session ``name``'s last statement has finished (after the lock it waited for is released)."""
        s = self._session(name)
        step = s.current
        if step is None:
            raise WorkbookError(f"Session {name} has run nothing yet.")
        timeout = self.wait_timeout if timeout is None else timeout
        if not s.finished.wait(timeout):
            still = self.blockers(name)
            self._cancel(s)
            raise WorkbookError(
                f"Session {name}'s statement did not finish within {timeout:g} s"
                + (f" (it still waited for {', '.join(still)})" if still else "") + "; it was cancelled.")
        if step.waited and step.done_at is None:
            step.done_at = len(self.steps) + 1
            self.steps.append(Step(n=step.done_at, session=name, sql="", state="resumed"))
        return step

    def wait_all(self) -> None:
        """:meth:`wait` for every session that is still waiting, in name order."""
        for name, s in self._sessions.items():
            if s.current is not None and s.current.waited and s.current.done_at is None:
                self.wait(name)

    def blockers(self, name: str) -> list[str]:
        """Names of the sessions that block ``name`` right now (empty when it is not waiting)."""
        s = self._session(name)
        if self.monitor is None:
            return []
        return sorted({self.name_of(p) for p in blocking_pids(self.monitor, s.pid)})

    def state(self, name: str) -> str:
        """``pg_stat_activity.state`` of the session (e.g. 'idle in transaction'), or 'gone'."""
        row = self.monitor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (self.pid(name),)).fetchone()
        return row[0] if row else "gone"

    def wait_gone(self, name: str, timeout: float | None = None) -> None:
        """Poll until session ``name``'s server process has ended (e.g. ended by a timeout), or raise."""
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        while self.state(name) != "gone":
            if time.monotonic() > deadline:
                raise WorkbookError(f"Session {name}'s server process was still there after the timeout.")
            time.sleep(0.02)  # polling interval only

    # ------------------------------------------------------------------ locks

    def locks(self, *, include_indexes: bool = False) -> list[dict]:
        """The sessions' locks from ``pg_locks``: session, lock type, relation, mode, granted (sorted, no ids).

        Only what the step order decides: table locks (index locks only with ``include_indexes``), row
        (tuple) locks, transaction-id and advisory locks; not virtualxid locks, not xids or pids.
        """
        pids = [s.pid for s in self._sessions.values()]
        rows = self.monitor.execute(
            """SELECT l.pid, l.locktype, c.relname, c.relkind, l.mode, l.granted
                 FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
                WHERE l.pid = ANY(%s) AND l.locktype IN ('relation', 'tuple', 'transactionid', 'advisory')""",
            (pids,)).fetchall()
        out = []
        for pid, locktype, relname, relkind, mode, granted in rows:
            if locktype == "relation" and (relkind not in ("r", "p") and not (include_indexes and relkind == "i")):
                continue
            if relname and relname.startswith("pg_"):
                continue
            out.append({"session": self.name_of(pid), "locktype": locktype, "relation": relname or "",
                        "mode": mode, "granted": bool(granted)})
        order = {"relation": 0, "tuple": 1, "transactionid": 2, "advisory": 3}
        out.sort(key=lambda r: (r["session"], order[r["locktype"]], r["relation"], r["mode"], not r["granted"]))
        return out

    def lock_table(self, **kw: Any) -> str:
        """:meth:`locks` as fixed-width text (deterministic)."""
        rows = self.locks(**kw)
        head = ("session", "locktype", "relation", "mode", "granted")
        cells = [[str(r[h]) if h != "granted" else ("yes" if r[h] else "NO (waiting)") for h in head] for r in rows]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
        return "\n".join(lines)

    # ------------------------------------------------------------------ the timeline

    def timeline(self, width: int = 38, steps: Iterable[Step] | None = None) -> str:
        """The interleaving as text: one row per step, one column per session (deterministic)."""
        return render_timeline(list(self.steps if steps is None else steps), self.names, width=width)


def _short_sql(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def render_timeline(steps: list[Step], names: list[str], width: int = 38) -> str:
    """Render steps as ``step | A | B`` text; a waiting statement gets a later row when it finished."""
    by_n = {s.n: s for s in steps}
    head = ["step"] + names
    rows: list[list[list[str]]] = []
    for st in steps:
        cell: list[str]
        if st.status == "resumed":
            orig = next((o for o in steps if o.session == st.session and o.done_at == st.n), None)
            text = f"↳ step {orig.n} finished: {orig.outcome()}" if orig else "↳ finished"
            cell = textwrap.wrap(text, width) or [""]
        else:
            cell = textwrap.wrap(_short_sql(st.sql), width) or [""]
            if st.waited:
                cell += textwrap.wrap("⏳ waits for " + (", ".join(st.blocked_by) or "a lock"), width)
            elif not (st.ok and st.rows is None and st.statusmessage == _short_sql(st.sql).split(" ")[0].upper()):
                cell += textwrap.wrap(st.outcome(), width)
        row = [[str(st.n)]] + [cell if n == st.session else [""] for n in names]
        rows.append(row)
    widths = [4] + [width] * len(names)
    sep = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), sep]
    for row in rows:
        height = max(len(c) for c in row)
        for i in range(height):
            parts = [(c[i] if i < len(c) else "") for c in row]
            parts[0] = parts[0].rjust(4)
            lines.append(" | ".join(p.ljust(w) for p, w in zip(parts, widths)).rstrip())
    del by_n
    return "\n".join(lines)
