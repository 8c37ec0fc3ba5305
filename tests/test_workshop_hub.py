"""A real JupyterHub (workshop/jupyterhub_config.py) in front of the test server, with 3 learners: each logs in
through the hub's REST API, gets their own JupyterLab, runs notebook 00 in it through the hub, and must have used
their own PostgreSQL role and database.

Needs the `workshop` extra (pip install -e '.[workshop]'); skipped without it, unless PDW_REQUIRE_WORKSHOP=1 (CI).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import db
from helpers.workshop import provision as pv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _require_hub() -> None:
    missing = [what for what, ok in (
        ("jupyterhub", importlib.util.find_spec("jupyterhub") is not None),
        ("configurable-http-proxy", (BIN / "configurable-http-proxy").exists()),
        ("websocket-client", importlib.util.find_spec("websocket") is not None)) if not ok]
    if missing:
        reason = f"the workshop extra is not installed ({', '.join(missing)} missing): pip install -e '.[workshop]'"
        if os.environ.get("PDW_REQUIRE_WORKSHOP") == "1":
            pytest.fail(reason + "; PDW_REQUIRE_WORKSHOP=1 requires it")
        pytest.skip(reason)
    if os.environ.get("PDW_SKIP_HUB_TEST") == "1":
        pytest.skip("PDW_SKIP_HUB_TEST=1: the hub test runs once per CI (against PostgreSQL 15), not on every server")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _code_cells(model: dict) -> list[str]:
    return [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in model["content"]["cells"] if c["cell_type"] == "code"]


CHECK = """import json, os
print(json.dumps({"role": db.scalar("SELECT current_user"), "database": db.scalar("SELECT current_database()"),
                  "dbname": db.dbname, "home": os.environ["PDW_HOME"]}))"""


def test_jupyterhub_serves_three_learners_each_on_their_own_role(tmp_path):
    _require_hub()
    from helpers.workshop.hubclient import HubClient

    ws = pv.provision(3, prefix="wsh" + os.urandom(3).hex(), scale="tiny", progress=False)
    hub_dir = tmp_path / "hub"
    port, internal, api = _free_ports(3)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PDW_NAMESPACE", "PDW_SCALE")}
    env.update(PDW_HUB_CREDENTIALS=str(ws.directory / "credentials.csv"), PDW_HUB_DIR=str(hub_dir),
               PDW_HUB_PORT=str(port), PDW_HUB_INTERNAL_PORT=str(internal), PDW_HUB_PROXY_API_PORT=str(api))
    log = open(tmp_path / "hub.log", "w")
    hub = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(ROOT / "workshop" / "jupyterhub_config.py")],
                           cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           start_new_session=True)
    client = HubClient(f"http://127.0.0.1:{port}")
    results: dict[str, dict] = {}
    tokens: dict[str, str] = {}
    try:
        client.wait_up(90, is_alive=lambda: hub.poll() is None)
        with pytest.raises(Exception, match="refused the login"):
            client.login(ws.learners[0].role, "not-the-password")

        def start(le: pv.Learner) -> None:
            try:
                t0 = time.perf_counter()
                tokens[le.role] = token = client.login(le.role, le.password)
                results[le.role] = {"url": client.spawn(le.role, token, timeout=180)}
                print(f"{le.role}: login + spawn {time.perf_counter() - t0:.1f} s")
            except Exception as exc:  # noqa: BLE001  (reported by the main thread)
                results[le.role] = {"exception": f"{type(exc).__name__}: {exc}"}

        # The three servers start at once, as in a room; the notebooks then run one after another, so the timing
        # checks inside notebook 00 (their margins are made for one notebook at a time) are not what is tested here.
        threads = [threading.Thread(target=start, args=(le,)) for le in ws.learners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        for le in ws.learners:
            got = results.get(le.role, {"exception": "did not start"})
            assert "exception" not in got, f"{le.role}: {got.get('exception')}"
            t1 = time.perf_counter()
            model = client.contents(got["url"], tokens[le.role], "notebooks/00_start_here.ipynb")  # private copy
            sources = _code_cells(model) + [CHECK]
            got["cells"] = client.run(got["url"], tokens[le.role], sources, timeout=240)
            got["sources"] = sources
            print(f"{le.role}: notebook 00 through the hub {time.perf_counter() - t1:.1f} s")
        for le in ws.learners:
            got = results[le.role]
            errors = [f"cell {i}: {c['error']} in {got['sources'][i][:200]!r}" for i, c in enumerate(got["cells"])
                      if c["error"]]
            assert not errors, f"{le.role}: {errors}"
            assert got["url"] == f"/user/{le.role}/"
            seen = json.loads(got["cells"][-1]["stdout"].strip().splitlines()[-1])
            assert seen["role"] == le.role
            assert seen["database"] == seen["dbname"] == db.db_name(le.role, "00_start_here", namespaced=False)
            assert Path(seen["home"]) == hub_dir / "homes" / le.role
        with db.connect() as admin:  # seen from the server: three databases, each owned by its learner
            owners = dict(admin.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
                ([db.db_name(le.role, "00_start_here", namespaced=False) for le in ws.learners],)).fetchall())
            assert owners == {db.db_name(le.role, "00_start_here", namespaced=False): le.role for le in ws.learners}
        for le in ws.learners:
            client.stop(le.role, tokens[le.role])
    finally:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)  # the hub stops the proxy and every learner's server it started
            try:
                hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
                hub.wait()
        log.close()
        pv.teardown(ws.prefix)
        if os.environ.get("PDW_KEEP_HUB_LOG") != "1":
            shutil.rmtree(hub_dir, ignore_errors=True)
