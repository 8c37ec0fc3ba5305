"""PgBouncer in front of a private server (lesson 11): find it, start it, stop it with the kernel.

PgBouncer is a real dependency that the workbook never installs: Debian/Ubuntu ``apt-get install pgbouncer``,
macOS ``brew install pgbouncer``. :func:`missing` says in one sentence why it cannot run (or None);
``PDW_REQUIRE_PGBOUNCER=1`` (set by CI) turns that skip into an error.

::

    from helpers import pgbouncer, private
    srv = private.spawn("conn")
    bouncer = pgbouncer.start(srv, pool_size=4)       # transaction pooling
    psycopg.connect(bouncer.dsn("postgres"), prepare_threshold=None)
    bouncer.stop()

It runs with only a unix socket, in a work directory of the private server, as the server's user when root (PgBouncer
refuses to run as root). It dies with the process that started it three ways: :meth:`Bouncer.stop` (also at exit),
the Linux parent-death signal (a ``kill -9`` of the kernel), and it is a child of that process besides.
The parent-death signal is tied to the *thread* that started it: start PgBouncer from the main thread (a bouncer
started from a worker thread gets the signal when that thread ends).

``max_prepared_statements`` (PgBouncer 1.21+, default 0 until 1.23 and 200 since 1.24) is written to the
configuration only when this PgBouncer knows it, so the same call behaves the same on 1.18 and on 1.24+.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from helpers import private
from helpers.core.errors import WorkbookError

__all__ = ["INSTALL", "missing", "require", "version", "start", "Bouncer"]

INSTALL = "sudo apt-get install pgbouncer (Debian/Ubuntu) or brew install pgbouncer (macOS)"
_LIVE: list["Bouncer"] = []


def _exe() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer")
                                              if os.access(p, os.X_OK)), None)


def missing() -> str | None:
    """None if PgBouncer can run here; else one sentence saying why not and how to install it."""
    why = private.available()
    if why:
        return why
    if _exe() is None:
        return f"PgBouncer is not installed, so this section is skipped: install it with {INSTALL}."
    return None


def require() -> str | None:
    """:func:`missing`, except that with ``PDW_REQUIRE_PGBOUNCER=1`` a missing PgBouncer is an error."""
    why = missing()
    if why and os.environ.get("PDW_REQUIRE_PGBOUNCER") == "1":
        raise WorkbookError(f"PDW_REQUIRE_PGBOUNCER=1 but PgBouncer cannot run: {why}")
    return why


def version() -> tuple[int, int]:
    """PgBouncer's (major, minor), e.g. (1, 18)."""
    exe = _exe()
    if exe is None:
        raise WorkbookError(missing() or "PgBouncer is not installed.")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    if not m:
        raise WorkbookError(f"Could not read PgBouncer's version from {out.strip()[:80]!r}.")
    return int(m.group(1)), int(m.group(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child, after the switch to the server user
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Bouncer:
    """A running PgBouncer: ``dsn(dbname)`` connects through it; ``stop()`` ends it."""

    def __init__(self, proc: subprocess.Popen, workdir: Path, port: int):
        self.proc, self.workdir, self.port = proc, workdir, port

    def dsn(self, dbname: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(host=str(self.workdir), port=self.port, user="postgres", dbname=dbname)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        """An autocommit connection through PgBouncer, with psycopg's server-side prepares off (see the lesson)."""
        kwargs.setdefault("prepare_threshold", None)
        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5, **kwargs)

    def stop(self) -> None:
        """SIGINT (PgBouncer's "safe shutdown": the same on 1.18 and 1.23+, where SIGTERM waits for every client
        to disconnect), then a kill if it has not exited within 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)

    def __enter__(self) -> "Bouncer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PgBouncer, {'running' if self.proc.poll() is None else 'stopped'}>"


def start(server: "private.PrivateServer", *, pool_size: int = 4, pool_mode: str = "transaction",
          max_client_conn: int = 200, extra_dbs: dict[str, int] | None = None,
          max_prepared_statements: int | None = None, timeout: float = 15) -> Bouncer:
    """Start PgBouncer in front of a private server: database ``postgres`` with ``pool_size`` server connections,
    plus each ``extra_dbs`` alias (name -> pool size) pointing at the same database.

    ``max_prepared_statements``: written only on PgBouncer 1.21+ (older ones have no such setting and never track
    prepared statements); None leaves the version's default (0 before 1.24, 200 since)."""
    why = require()
    if why:
        raise WorkbookError(why)
    wd = server.workdir("pgbouncer")
    port = _free_port()
    target = f"host={server.socket_dir} port={server.port} dbname=postgres"
    dbs = [f"postgres = {target} pool_size={int(pool_size)}"]
    dbs += [f"{name} = {target} pool_size={int(n)}" for name, n in (extra_dbs or {}).items()]
    ini = "\n".join([
        "[databases]", *dbs, "",
        "[pgbouncer]",
        "listen_addr =",  # no TCP: only the unix socket below
        f"listen_port = {port}", f"unix_socket_dir = {wd}",
        "auth_type = trust", f"auth_file = {wd / 'users.txt'}",
        f"pool_mode = {pool_mode}", f"max_client_conn = {int(max_client_conn)}",
        f"default_pool_size = {int(pool_size)}",
        f"logfile = {wd / 'pgbouncer.log'}", f"pidfile = {wd / 'pgbouncer.pid'}",
        "ignore_startup_parameters = extra_float_digits",
        *([f"max_prepared_statements = {int(max_prepared_statements)}"]
          if max_prepared_statements is not None and version() >= (1, 21) else []),
        "",
    ])
    (wd / "pgbouncer.ini").write_text(ini)
    (wd / "users.txt").write_text('"postgres" ""\n')
    owner = private._owner()
    for f in ("pgbouncer.ini", "users.txt"):
        if owner:
            os.chown(wd / f, *owner)
    proc = subprocess.Popen([_exe(), str(wd / "pgbouncer.ini")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(wd),
                            preexec_fn=_die_with_parent, **private._run_as())
    bouncer = Bouncer(proc, wd, port)
    _LIVE.append(bouncer)
    if len(_LIVE) == 1:
        atexit.register(lambda: [b.stop() for b in list(_LIVE)])
    deadline = time.monotonic() + timeout
    while True:  # poll until it accepts a query (or died, or the time is up)
        if proc.poll() is not None:
            log = (wd / "pgbouncer.log").read_text(errors="replace").strip().splitlines() if (wd / "pgbouncer.log").exists() else []
            raise WorkbookError(f"PgBouncer did not start ({(log or ['no log'])[-1]}).")
        try:
            with bouncer.connect() as conn:
                conn.execute("SELECT 1")
            return bouncer
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                bouncer.stop()
                raise WorkbookError(f"PgBouncer did not accept connections within {timeout:.0f} s.") from None
            time.sleep(0.05)
