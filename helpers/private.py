"""Private throw-away PostgreSQL servers from the embedded binaries (12_backup_restore; lesson 11 reuses them).

A lesson that must break a server on purpose (lose data, restore a backup, run a replica) does it on a server of
its own, never on the learner's::

    from helpers import private
    primary = private.spawn("primary", {"wal_level": "replica", "archive_mode": "on"})
    primary.sql("SELECT version()")
    primary.run("pg_basebackup", "-D", primary.workdir("base"), "-d", primary.conninfo)
    primary.stop()

Each server gets a fresh directory under ``var/private/`` (or ``$PDW_HOME/var/private``) holding its data
directory, its unix socket (TCP stays off) and any work directories (:meth:`PrivateServer.workdir`); its port is a
free one, so several private servers and the learner's own server never clash.

Cleanup is guaranteed three ways: :meth:`PrivateServer.stop` (also registered with ``atexit``, for a kernel that
exits normally); a small *watchdog* process started with each server, in its own session, that stops the
postmaster and deletes the directory as soon as the process that spawned it disappears (``kill -9`` of a notebook
kernel skips ``atexit``); and a sweep at every :func:`spawn` that removes what a dead owner left behind (in case the
watchdog itself was killed too).

As root, the servers and the tools that write their files run as the system user ``embedded_postgres``, like the
learner's embedded server (:mod:`helpers.core.server`).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, TypeVar

import psutil
import psycopg

from helpers.core import server as _server
from helpers.core import settings
from helpers.core.errors import WorkbookError

__all__ = ["WorkbookError", "PrivateServer", "spawn", "available", "ensure_space", "private_root", "bin", "running", "sweep", "own_dir", "run_tool", "workspace", "PerDatabase"]

_MAX_SOCKET_PATH = 100
_LIVE: dict[str, "PrivateServer"] = {}
_ATEXIT = False


def private_root() -> Path:
    """Where private servers live: ``var/private`` of the checkout (or of ``PDW_HOME``)."""
    return settings.VAR_DIR / "private"


def bin(tool: str) -> Path:  # noqa: A001 - the name the lessons use: private.bin("pg_dump")
    """Path of a bundled PostgreSQL program (``pg_dump``, ``pg_basebackup``, ...)."""
    path = _server.bin_dir() / tool
    if not path.exists():
        raise WorkbookError(f"The embedded PostgreSQL has no program {tool!r}.")
    return path


def available() -> str | None:
    """None if private servers can run here, else one sentence why not (a notebook skips those sections)."""
    try:
        _server.bin_dir()
    except WorkbookError as exc:
        return str(exc)
    if os.name != "posix":
        return "Private servers need Linux or macOS (unix sockets and process groups)."
    return None


def ensure_space(path: Path | str, needed: int, what: str = "this step") -> int:
    """Refuse, in one sentence, if the file system of ``path`` has less than ``needed`` bytes (plus 10% and
    256 MB to spare) free; returns the free bytes."""
    path = Path(path)
    probe = path if path.exists() else next(p for p in path.parents if p.exists())
    free = shutil.disk_usage(probe).free
    want = int(needed * 1.1) + (256 << 20)
    if free < want:
        raise WorkbookError(f"Not enough disk space for {what}: it needs ~{want / 2**20:,.0f} MB and only "
                            f"~{free / 2**20:,.0f} MB are free; free some space and run the cell again.")
    return free


def own_dir(path: Path | str) -> Path:
    """Make ``path`` a directory the server user may write (as root: owned by it, mode 0700); returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    owner = _owner()
    if owner:
        _traversable(path)
        os.chown(path, *owner)
        path.chmod(0o700)
    return path


# ---------------------------------------------------------------- running the binaries

def _run_as() -> dict:
    return _server._run_as()


def _owner() -> tuple[int, int] | None:
    ra = _run_as()
    return (ra["user"], ra["group"]) if ra else None


def _chown_tree(path: Path) -> None:
    owner = _owner()
    if owner is None or not path.exists():
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *owner)
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), *owner, follow_symlinks=False)


def _traversable(path: Path) -> None:
    """As root: let the server user walk down to ``path`` (x bit on every parent), like the embedded server."""
    if _owner() is None:
        return
    p = path
    while p != p.parent:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)
        p = p.parent


def _env(extra: Mapping[str, str] | None = None) -> dict:
    env = _server._env()
    env.update(extra or {})
    return env


def run_tool(tool: str, *args: Any, timeout: float = 300, env: Mapping[str, str] | None = None,
             check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a bundled program (as the server user when root); a failure ends in one sentence with its last error."""
    cmd = [str(bin(tool)), *map(str, args)]
    try:
        res = subprocess.run(cmd, env=_env(env), capture_output=True, text=True, timeout=timeout,
                             cwd=str(cwd) if cwd else "/",
                             **_run_as())
    except subprocess.TimeoutExpired:
        raise WorkbookError(f"{tool} did not finish within {timeout:.0f} s and was stopped.") from None
    if check and res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        worst = [ln for ln in lines if re.search(r"error|fatal", ln, re.I)]
        raise WorkbookError(f"{tool} failed: {(worst or lines or ['no message'])[-1].strip()}")
    return res


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# ---------------------------------------------------------------- the server

class PrivateServer:
    """One private server: ``url``/``conninfo`` to connect, ``bin()`` for its programs, ``stop()`` to discard it."""

    def __init__(self, name: str, root: Path, port: int, sock: Path):
        self.name = name
        self.root = root
        self.pgdata = root / "data"
        self.port = port
        self.socket_dir = sock
        self.watchdog: subprocess.Popen | None = None
        self.stopped = False

    # -- connecting
    @property
    def conninfo(self) -> str:
        """libpq connection string to the ``postgres`` database (for ``-d`` of the command-line tools)."""
        return self.dsn("postgres")

    def dsn(self, dbname: str = "postgres") -> str:
        return psycopg.conninfo.make_conninfo(host=str(self.socket_dir), port=self.port, user="postgres",
                                              dbname=dbname)

    @property
    def url(self) -> str:
        """SQLAlchemy/psycopg URL of the ``postgres`` database."""
        from urllib.parse import quote

        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        """An autocommit connection (statement_timeout 60s unless given in ``options``)."""
        kwargs.setdefault("options", "-c statement_timeout=60s -c lock_timeout=30s -c timezone=UTC")
        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5, **kwargs)

    def sql(self, query: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        """Run one statement on a short-lived connection; rows (or [] for a command)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, query: str, params: Any = None, dbname: str = "postgres") -> Any:
        rows = self.sql(query, params, dbname)
        return rows[0][0] if rows else None

    # -- files and programs
    @staticmethod
    def bin(tool: str) -> Path:
        return bin(tool)

    def run(self, tool: str, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a bundled program (``pg_basebackup``, ``pg_dump``, ...) as the server's user."""
        return run_tool(tool, *args, **kwargs)

    def workdir(self, name: str, *, fresh: bool = True) -> Path:
        """A directory in this server's private area (deleted with it), owned by the server user, mode 0700."""
        path = self.root / name
        if fresh and path.exists():
            shutil.rmtree(path)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        owner = _owner()
        if owner:
            os.chown(path, *owner)
        return path

    def log_tail(self, n: int = 1) -> str:
        with contextlib.suppress(OSError):
            lines = (self.root / "server.log").read_text(errors="replace").strip().splitlines()
            worst = [ln for ln in lines[-80:] if re.search(r"\b(FATAL|PANIC|ERROR):", ln)]
            return " / ".join((worst or lines)[-n:])
        return ""

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
            proc = psutil.Process(pid)
            return pid if "postgres" in proc.name() else None
        except (FileNotFoundError, PermissionError, ValueError, IndexError, psutil.NoSuchProcess):
            return None

    # -- life
    def start(self, timeout: float = 120) -> None:
        _chown_tree(self.pgdata)
        self.pgdata.chmod(0o700)
        opts = f"-k {shlex.quote(str(self.socket_dir))} -p {self.port} -c listen_addresses=''"
        res = run_tool("pg_ctl", "-D", self.pgdata, "-w", "-t", int(timeout), "-l", self.root / "server.log",
                       "-o", opts, "start", check=False, timeout=timeout + 30)
        if res.returncode != 0:
            raise WorkbookError(f"The private server {self.name!r} did not start "
                                f"({self.log_tail() or res.stderr.strip()}).")

    def restart(self) -> None:
        self.pg_stop()
        self.start()

    def pg_stop(self, mode: str = "fast") -> None:
        """Stop the postmaster but keep the files (a crash or a planned stop; ``start()`` brings it back)."""
        if self.postmaster_pid() is None:
            return
        run_tool("pg_ctl", "-D", self.pgdata, "-w", "-t", "60", "-m", mode, "stop", check=False, timeout=90)
        _kill_postmaster(self.pgdata)

    def stop(self) -> None:
        """Stop the server and delete everything it had (data, socket, work directories). Safe to call twice."""
        if self.stopped:
            return
        with contextlib.suppress(Exception):
            self.pg_stop("immediate")
        _remove(self.root, self.socket_dir)
        self.stopped = True
        _LIVE.pop(str(self.root), None)
        if self.watchdog is not None:
            with contextlib.suppress(Exception):
                self.watchdog.wait(timeout=5)  # it sees the directory gone and exits

    def __enter__(self) -> "PrivateServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("running" if self.postmaster_pid() else "not running")
        return f"<private server {self.name!r}, {state}>"  # no port: it changes every run


def _kill_postmaster(pgdata: Path) -> None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        proc = psutil.Process(pid)
        if "postgres" in proc.name():
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown of the whole server
            with contextlib.suppress(psutil.TimeoutExpired):
                proc.wait(5)
            if proc.is_running():
                proc.kill()
    except (FileNotFoundError, PermissionError, ValueError, IndexError, psutil.NoSuchProcess):
        pass


def _remove(root: Path, sock: Path) -> None:
    for data in [root / "data", *root.glob("*/postmaster.pid")]:
        _kill_postmaster(data if data.is_dir() else data.parent)
    shutil.rmtree(root, ignore_errors=True)
    if sock.exists() and not str(sock).startswith(str(root)):
        shutil.rmtree(sock, ignore_errors=True)


def _stop_all_at_exit() -> None:
    for srv in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            srv.stop()


def running() -> list[PrivateServer]:
    """The private servers this process has spawned and not stopped."""
    return list(_LIVE.values())


def _owner_alive(info: dict) -> bool:
    try:
        proc = psutil.Process(int(info["pid"]))
        return abs(proc.create_time() - float(info["started"])) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError, TypeError):
        return False


def sweep() -> int:
    """Remove private servers whose owning process is gone (their watchdog was killed too); returns how many."""
    base = private_root()
    n = 0
    if not base.exists():
        return 0
    for root in base.iterdir():
        if not root.is_dir():
            continue
        try:
            info = json.loads((root / "owner.json").read_text())
        except (FileNotFoundError, ValueError):
            if time.time() - root.stat().st_mtime < 60:  # being created right now
                continue
            info = {}
        if not _owner_alive(info):
            _remove(root, Path(info.get("socket_dir", root / "sock")))
            n += 1
    return n


def _settings_text(values: Mapping[str, Any]) -> str:
    return "".join(f"{k} = {_conf_value(v)}\n" for k, v in values.items())


def spawn(name: str, settings_: Mapping[str, Any] | None = None, *, from_dir: Path | str | None = None,
          recovery: bool = False, standby: bool = False, start: bool = True, init: bool = True) -> PrivateServer:
    """Start a private PostgreSQL 18 server; returns a :class:`PrivateServer`.

    ``settings_`` are written to ``postgresql.auto.conf`` (e.g. ``{"archive_mode": "on"}``). ``from_dir`` starts it
    from a copy of an existing data directory instead of a fresh ``initdb`` (a base backup, which stays as it was);
    ``recovery`` / ``standby`` put ``recovery.signal`` / ``standby.signal`` there. ``init=False`` makes only the
    private directory (a work area with the same cleanup guarantees, no server: see :func:`workspace`).
    """
    why = available()
    if why:
        raise WorkbookError(why)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name):
        raise WorkbookError(f"A private server's name must be short lowercase letters, digits or _, not {name!r}.")
    global _ATEXIT
    sweep()
    base = private_root()
    base.mkdir(parents=True, exist_ok=True)
    _traversable(base)
    root = base / f"{name}-{secrets.token_hex(3)}"
    root.mkdir(mode=0o700)
    port = _free_port()
    sock = root
    if len(str(sock / f".s.PGSQL.{port}")) > _MAX_SOCKET_PATH:
        import tempfile

        sock = Path(tempfile.gettempdir()) / f"pdw-p-{root.name}"
        sock.mkdir(mode=0o700)
    me = psutil.Process()
    (root / "owner.json").write_text(json.dumps({"pid": me.pid, "started": me.create_time(), "name": name,
                                                 "socket_dir": str(sock)}))
    owner = _owner()
    if owner:
        os.chown(root, *owner)
        os.chown(sock, *owner)
    srv = PrivateServer(name, root, port, sock)
    _LIVE[str(root)] = srv
    if not _ATEXIT:
        atexit.register(_stop_all_at_exit)
        _ATEXIT = True
    srv.watchdog = _start_watchdog(root, sock)
    if not init:
        return srv
    try:
        if from_dir is None:
            srv.pgdata.mkdir(mode=0o700)
            if owner:
                os.chown(srv.pgdata, *owner)
            run_tool("initdb", "-D", srv.pgdata, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                     "--locale=C.UTF-8", "--no-sync", "--no-instructions", timeout=180)
        else:
            shutil.copytree(str(from_dir), str(srv.pgdata), symlinks=True)
            for stale in ("postmaster.pid", "postmaster.opts"):
                with contextlib.suppress(FileNotFoundError):
                    (srv.pgdata / stale).unlink()
        conf = {"fsync": "off", "shared_preload_libraries": "", **dict(settings_ or {})}
        with open(srv.pgdata / "postgresql.auto.conf", "a") as fh:
            fh.write(_settings_text(conf))
        if recovery:
            (srv.pgdata / "recovery.signal").touch()
        if standby:
            (srv.pgdata / "standby.signal").touch()
        if start:
            srv.start()
    except BaseException:
        srv.stop()
        raise
    return srv


def workspace(name: str) -> PrivateServer:
    """A private directory with no server in it (``.root``, ``.workdir()``), removed like a server's: by
    ``stop()``, at exit, or by the watchdog when the process is killed."""
    return spawn(name, init=False)


# ---------------------------------------------------------------- the watchdog

def _start_watchdog(root: Path, sock: Path) -> subprocess.Popen:
    me = psutil.Process()
    # Its own session: a kernel restart that signals the kernel's process group does not take the watchdog along.
    return subprocess.Popen(
        [sys.executable, "-m", "helpers.private", "--watch", str(me.pid), repr(me.create_time()), str(root),
         str(sock)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/")


def _watch(pid: int, started: float, root: Path, sock: Path, interval: float = 0.2) -> None:
    """Wait until the owner is gone (then clean up) or the directory is gone (the owner cleaned up)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    info = {"pid": pid, "started": started}
    while True:
        if not root.exists():
            return
        if not _owner_alive(info):
            _remove(root, sock)
            return
        time.sleep(interval)


T = TypeVar("T")


class PerDatabase(Generic[T]):
    """The private servers an exercise's setup made, kept per lesson database (lessons 11 and 12).

    :meth:`replace` stops what an earlier setup on the same lesson database left running, then makes and keeps the
    new set; :meth:`get` returns it while ``alive`` says it is usable, else None (the setup has not run, or its
    servers were stopped since).
    """

    def __init__(self, alive: Callable[[T], bool], stop: Callable[[T], None]) -> None:
        self._alive, self._stop = alive, stop
        self._items: dict[str, T] = {}

    def get(self, conn: psycopg.Connection) -> T | None:
        item = self._items.get(conn.info.dbname)
        return item if item is not None and self._alive(item) else None

    def require(self, conn: psycopg.Connection) -> T:
        """What :meth:`get` returns, or the one sentence a learner needs when the setup has not run."""
        item = self.get(conn)
        if item is None:
            raise WorkbookError("Run the exercise's setup cell first (ex.setup(db)).")
        return item

    def replace(self, conn: psycopg.Connection, make: Callable[[], T]) -> T:
        old = self._items.pop(conn.info.dbname, None)
        if old is not None:
            self._stop(old)
        item = self._items[conn.info.dbname] = make()
        return item


if __name__ == "__main__":  # python -m helpers.private --watch PID STARTED ROOT SOCK
    if len(sys.argv) == 6 and sys.argv[1] == "--watch":
        _watch(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        print("usage: python -m helpers.private --watch PID STARTED ROOT SOCK", file=sys.stderr)
        sys.exit(2)
