"""Drive a running JupyterHub the way a learner's browser does, over its REST API (tests, and an instructor's dry run).

Log in with name and password (``POST /hub/api/users/<name>/tokens`` with an ``auth`` body: the hub hands the
credentials to its authenticator), start the learner's server, open a kernel on it through the hub's proxy, and run
code cells in that kernel over the kernel's websocket. Needs only the standard library and ``websocket-client``
(a dependency of jupyter-server).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from urllib.parse import quote

from helpers.core.errors import WorkbookError


class HubClient:
    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")

    def request(self, method: str, path: str, *, token: str | None = None, body=None,
                timeout: float = 30) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"token {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw.strip() else None
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def wait_up(self, timeout: float = 60, is_alive=lambda: True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not is_alive():
                raise WorkbookError("JupyterHub exited while starting; see its log.")
            try:
                status, _ = self.request("GET", "/hub/api/", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise WorkbookError(f"JupyterHub did not answer at {self.base} within {timeout:.0f} s.")

    def login(self, name: str, password: str) -> str:
        """A token for ``name``, issued after the hub's authenticator accepted the password."""
        status, body = self.request("POST", f"/hub/api/users/{quote(name)}/tokens",
                                    body={"auth": {"username": name, "password": password},
                                          "note": "workshop check", "expires_in": 3600})
        if status != 201:
            raise WorkbookError(f"The hub refused the login of {name!r} (HTTP {status}).")
        return body["token"]

    def spawn(self, name: str, token: str, timeout: float = 120) -> str:
        """Start the learner's server and wait until the hub says it is ready; returns its URL path."""
        status, body = self.request("POST", f"/hub/api/users/{quote(name)}/server", token=token)
        if status not in (201, 202, 400):  # 400: already running
            raise WorkbookError(f"The hub could not start {name!r}'s server (HTTP {status}: {body}).")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, model = self.request("GET", f"/hub/api/users/{quote(name)}", token=token)
            server = (model or {}).get("servers", {}).get("") if status == 200 else None
            if server and server.get("ready"):
                return server["url"]
            time.sleep(0.3)
        raise WorkbookError(f"{name!r}'s server was not ready within {timeout:.0f} s.")

    def stop(self, name: str, token: str) -> None:
        self.request("DELETE", f"/hub/api/users/{quote(name)}/server", token=token, timeout=60)

    def contents(self, server_url: str, token: str, path: str) -> dict:
        status, model = self.request("GET", f"{server_url.rstrip('/')}/api/contents/{quote(path)}?content=1",
                                     token=token)
        if status != 200:
            raise WorkbookError(f"{path} is not in the learner's server (HTTP {status}).")
        return model

    def run(self, server_url: str, token: str, cells: list[str], *, timeout: float = 300) -> list[dict]:
        """Run code cells in a new kernel of the learner's server, through the hub's proxy; returns one dict per
        cell (``stdout``, ``stderr``, ``error``). Stops at the first error, as a notebook run does; a WorkbookError
        (which the workbook prints as one line on stderr instead of raising a traceback) counts as an error."""
        import websocket

        status, kernel = self.request("POST", f"{server_url.rstrip('/')}/api/kernels", token=token,
                                      body={"name": "python3"})
        if status not in (200, 201):
            raise WorkbookError(f"Could not start a kernel (HTTP {status}: {kernel}).")
        ws_url = self.base.replace("http", "ws", 1) + f"{server_url.rstrip('/')}/api/kernels/{kernel['id']}/channels"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
        session = uuid.uuid4().hex
        results = []
        try:
            for code in cells:
                msg_id = uuid.uuid4().hex
                ws.send(json.dumps({
                    "header": {"msg_id": msg_id, "username": "", "session": session, "msg_type": "execute_request",
                               "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                                "allow_stdin": False, "stop_on_error": True}}))
                out = {"stdout": "", "stderr": "", "error": None}
                deadline = time.monotonic() + timeout
                while True:
                    if time.monotonic() > deadline:
                        raise WorkbookError(f"A cell ran longer than {timeout:.0f} s in the learner's kernel.")
                    msg = json.loads(ws.recv())
                    if msg.get("parent_header", {}).get("msg_id") != msg_id or msg.get("channel") != "iopub":
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "stream":
                        out[content.get("name") if content.get("name") == "stderr" else "stdout"] += content["text"]
                    elif kind == "error":
                        out["error"] = f"{content['ename']}: {content['evalue']}"
                    elif kind == "status" and content.get("execution_state") == "idle":
                        break
                if not out["error"] and "WorkbookError:" in out["stderr"]:
                    out["error"] = out["stderr"][out["stderr"].index("WorkbookError:"):].strip().splitlines()[0]
                results.append(out)
                if out["error"]:
                    break
        finally:
            ws.close()
            self.request("DELETE", f"{server_url.rstrip('/')}/api/kernels/{kernel['id']}", token=token)
        return results
