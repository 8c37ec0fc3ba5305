"""helpers.private: throw-away servers start, answer, and are removed by stop(), at exit, and after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from helpers import private
from helpers.core.errors import WorkbookError

pytestmark = pytest.mark.skipif(private.available() is not None, reason="no embedded PostgreSQL binaries")


def _postmasters_under(root: Path) -> list[int]:
    """pids of postgres processes whose data directory is under ``root``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "postgres" in (proc.info["name"] or "") and str(root) in cmd:
            found.append(proc.pid)
    return found


def _wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_spawn_settings_connect_and_stop():
    with private.spawn("t_basic", {"work_mem": "7MB"}) as srv:
        assert srv.scalar("SHOW work_mem") == "7MB"
        assert srv.scalar("SELECT current_setting('server_version_num')::int") >= 170000
        assert srv.root.is_relative_to(private.private_root())
        assert f"port={srv.port}" in srv.conninfo and srv.url.startswith("postgresql://")
        assert private.bin("pg_dump").exists() and srv.bin("psql").exists()
        assert srv in private.running() and "running" in repr(srv)
        work = srv.workdir("w")
        assert work.is_dir() and work.parent == srv.root
        pid = srv.postmaster_pid()
        assert pid is not None
    assert srv.stopped and not srv.root.exists() and not psutil.pid_exists(pid) or \
        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert srv not in private.running()
    assert _wait_until(lambda: srv.watchdog.poll() is not None, 10)  # its watchdog saw the directory go and ended
    srv.stop()  # twice is fine


def test_bad_name_and_bad_setting_give_one_sentence():
    with pytest.raises(WorkbookError, match="name"):
        private.spawn("Bad Name!")
    with pytest.raises(WorkbookError, match="did not start"):
        private.spawn("t_badconf", {"shared_buffers": "lots"})
    assert not [p for p in private.private_root().glob("t_badconf-*")]


def test_ensure_space_refuses_in_one_sentence(tmp_path):
    assert private.ensure_space(tmp_path, 1) > 0
    with pytest.raises(WorkbookError, match="Not enough disk space for the test backup"):
        private.ensure_space(tmp_path, 1 << 60, "the test backup")


def test_base_backup_and_standby_from_it():
    with private.spawn("t_prim") as prim:
        prim.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        copy = prim.workdir("copy")
        prim.run("pg_basebackup", "-d", prim.conninfo, "-D", copy, "-R", "-c", "fast", "--no-sync")
        with private.spawn("t_stby", from_dir=copy) as stby:
            assert stby.scalar("SELECT pg_is_in_recovery()") is True
            assert stby.scalar("SELECT count(*) FROM t") == 1000
        assert copy.exists()  # started from a copy: the backup stays as it was


def _run_owner(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)


def test_normal_exit_removes_the_servers():
    proc = _run_owner("""
        from helpers import private
        s = private.spawn("t_exit")
        print(s.root, flush=True)
    """)
    root = Path(proc.stdout.readline().strip())
    assert proc.wait(60) == 0
    assert not root.exists() and not _postmasters_under(root)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_owner_leaves_no_postmaster_and_no_directory(sig):
    proc = _run_owner("""
        import time
        from helpers import private
        s = private.spawn("t_killed")
        print(s.root, s.postmaster_pid(), flush=True)
        time.sleep(120)
    """)
    line = proc.stdout.readline().split()
    root, pid = Path(line[0]), int(line[1])
    assert root.exists() and psutil.pid_exists(pid)
    os.kill(proc.pid, sig)  # kill -9: no atexit, no finally; the watchdog must clean up
    proc.wait(10)
    assert _wait_until(lambda: not root.exists(), 30), "the directory of a killed owner's server was left"
    assert _wait_until(lambda: not _postmasters_under(root), 10)
    assert _wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)


def test_sweep_removes_what_a_dead_owner_left(tmp_path):
    # an owner whose watchdog died too: the next spawn's sweep removes its directory
    leftover = private.private_root() / "t_orphan-000000"
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / "owner.json").write_text('{"pid": 999999999, "started": 0, "socket_dir": "%s"}' % leftover)
    assert private.sweep() >= 1
    assert not leftover.exists()


def test_killed_jupyter_kernel_leaves_nothing():
    """The case the notebooks meet: a Jupyter kernel that spawned a server is killed with kill -9."""
    jupyter_client = pytest.importorskip("jupyter_client")
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    out: list[str] = []
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("from helpers import private\ns = private.spawn('t_kernel')\n"
                               "print(s.root, s.postmaster_pid())", timeout=120,
                               output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        root_text, pid_text = "".join(out).split()
        root, pid = Path(root_text), int(pid_text)
        assert root.exists() and psutil.pid_exists(pid)
        os.kill(km.provisioner.process.pid, signal.SIGKILL)
        assert _wait_until(lambda: not root.exists(), 30), "a killed kernel's private server directory was left"
        assert _wait_until(lambda: not psutil.pid_exists(pid) or
                           psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)
        assert not _postmasters_under(root)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_workspace_is_a_directory_without_a_server():
    ws = private.workspace("t_ws")
    assert ws.root.is_dir() and not ws.pgdata.exists() and ws.postmaster_pid() is None
    (ws.root / "f").write_text("x")
    ws.stop()
    assert not ws.root.exists()


def test_per_database_keeps_one_set_per_lesson_database_and_stops_the_last():
    from types import SimpleNamespace

    from helpers.private import PerDatabase

    stopped = []
    kept = PerDatabase(lambda item: item["up"], lambda item: stopped.append(item["n"]))
    a, b = (SimpleNamespace(info=SimpleNamespace(dbname=name)) for name in ("pdw_x_11", "pdw_y_11"))
    assert kept.get(a) is None
    with pytest.raises(WorkbookError, match="Run the exercise's setup cell first"):
        kept.require(a)
    first = kept.replace(a, lambda: {"n": 1, "up": True})
    assert kept.require(a) is first and kept.get(b) is None
    second = kept.replace(a, lambda: {"n": 2, "up": True})
    assert stopped == [1] and kept.get(a) is second
    second["up"] = False  # its servers stopped since: as if the setup never ran
    assert kept.get(a) is None
