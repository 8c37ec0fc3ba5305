"""The embedded server's life cycle, on a private data directory (PDW_HOME) so the suite's own server is untouched."""
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

pytestmark = pytest.mark.slow


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmd:
            found.append(proc)
    return found


def _py(home: Path, code: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PDW_HOME"] = str(home)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "wb"
    home.mkdir()
    yield home
    pgdata = home / "var" / "pgdata"
    for proc in _postmasters(pgdata):  # never leave a server behind, whatever the test did
        proc.kill()


HOLD = """
    import time
    from helpers.core import server
    from helpers import db
    server.ensure_running(hold=True)
    with db.connect() as c:
        print(c.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0], flush=True)
    time.sleep(120)
"""


def test_kill_9_of_the_holder_leaves_no_stray_server(home):
    pgdata = home / "var" / "pgdata"
    holder = _py(home, HOLD)
    line = holder.stdout.readline().strip()
    assert line == "pg_stat_statements,auto_explain", holder.stderr.read() if not line else line
    assert len(_postmasters(pgdata)) == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert len(_postmasters(pgdata)) == 1  # orphaned: nobody deregistered

    # The next user starts fine, prunes the dead holder, and stops the server when it exits.
    nxt = _py(home, """
        from helpers.core import server
        from helpers import db
        st = server.ensure_running(hold=True)
        with db.connect() as c:
            print(c.execute("SELECT 1").fetchone()[0], len(st.holders), flush=True)
    """)
    out, err = nxt.communicate(timeout=60)
    assert out.split() == ["1", "1"], err
    for _ in range(50):
        if not _postmasters(pgdata):
            break
        time.sleep(0.1)
    assert _postmasters(pgdata) == []


def test_server_shared_by_two_processes_stops_after_the_last(home):
    pgdata = home / "var" / "pgdata"
    a = _py(home, HOLD)
    assert a.stdout.readline().strip()
    b = _py(home, """
        from helpers.core import server
        from helpers import db
        server.ensure_running(hold=True)
        with db.connect() as c:
            print(c.execute("SELECT 2").fetchone()[0], flush=True)
    """)
    out, err = b.communicate(timeout=60)
    assert out.strip() == "2", err
    assert len(_postmasters(pgdata)) == 1  # a still holds it
    a.send_signal(signal.SIGTERM)  # SIGTERM skips atexit, like a killed kernel
    a.wait()
    cli = subprocess.run([sys.executable, "-m", "helpers", "server", "stop"],
                         env={**os.environ, "PDW_HOME": str(home)}, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert _postmasters(pgdata) == []


def test_cli_start_status_url_stop(home):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PDW_HOME"] = str(home)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "helpers", "server", *args], env=env, capture_output=True,
                              text=True, timeout=90)

    assert cli("status").returncode == 3
    assert cli("start").returncode == 0
    st = cli("status")
    assert st.returncode == 0 and "started explicitly" in st.stdout
    url = cli("url").stdout.strip()
    assert url.startswith("postgresql://postgres@/postgres?host=")
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 180000
    port = 55000 + os.getpid() % 400
    tcp = cli("url", "--tcp", str(port)).stdout.strip()
    assert tcp == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(tcp) as conn:  # what a GUI client would use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # With TCP the server's one port also names its socket file (.s.PGSQL.<port>): socket clients must follow it.
    sock = cli("url").stdout.strip()
    assert sock.endswith(f"&port={port}"), sock
    with psycopg.connect(sock) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    code = "from helpers import db\nwith db.connect() as c: print(c.execute('SELECT 1').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90)
    assert out.stdout.strip() == "1", out.stderr[-1500:]
    assert cli("stop").returncode == 0
    assert _postmasters(home / "var" / "pgdata") == []


def test_a_locale_that_is_not_installed_does_not_stop_the_server(home):
    """initdb fails with 'invalid locale settings' under a missing locale; the server's processes get C.UTF-8."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PDW_HOME=str(home), LANG="xx_YY.UTF-8", LC_ALL="xx_YY.UTF-8")
    code = "from helpers import db\nwith db.connect() as c: print(c.execute('SELECT 1').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "1", out.stderr[-1500:]


@pytest.mark.parametrize("subdir", ["a folder with spaces", "deep/" + "x" * 60 + "/" + "y" * 40])
def test_unusual_checkout_paths_still_start(tmp_path, subdir):
    """A space in the path (pg_ctl passes options through a shell), and a path too long for a unix socket."""
    if " " in subdir:  # short enough that the socket stays in the data directory, so its path has the space
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="pdw sp "))
    else:
        home = tmp_path / subdir
        home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PDW_HOME"] = str(home)
    code = ("from helpers import db\nfrom helpers.core import server\nwith db.connect() as c: print(c.execute('SELECT 1').fetchone()[0])\n"
            "print(server.socket_dir() == server._pgdata())")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.split()[:1] == ["1"], out.stderr[-1500:]
        assert out.stdout.split()[1] == ("True" if " " in subdir else "False")  # the long one moved its socket
    finally:
        for proc in _postmasters(home / "var" / "pgdata"):
            proc.kill()
        if " " in subdir:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
