"""A loopback TCP proxy that adds a real delay to every round trip (introduced in notebook 04, N+1).

On a laptop the database is a fraction of a millisecond away, so a loop that sends 150 statements
costs almost nothing. In production the database is across a network: every statement waits for a
round trip of 0.5 to 5 ms (or more between regions). :class:`LatencyProxy` puts that network back
between the notebook and the server, honestly: the bytes really travel through it, and it holds
every message the client sends for ``delay_ms`` before forwarding it to the server. Replies pass
straight through, so each request/response round trip gets exactly one delay, like a link whose
round-trip time is ``delay_ms``. Messages sent back to back (psycopg's pipeline mode) are each
held ``delay_ms`` from the moment they arrived, not one after the other, as on a real link.

::

    with delayed_engine(db, delay_ms=5) as engine:     # SQLAlchemy engine through the proxy
        with Session(engine) as session:
            ...

The proxy listens on 127.0.0.1 only, on a free port the OS picks, forwards to the lesson's server
(its unix socket for the embedded server, host and port for ``DATABASE_URL``), and stops with the
``with`` block: it closes its sockets and its threads end.

By default the proxy's threads run in the caller's process. Python threads share one interpreter lock,
so while the client (psycopg, the ORM) is busy the proxy's threads wait for it, and a round trip costs
noticeably more than ``delay_ms`` (a review of lesson 04 saw ~9.6 ms per trip at 5 ms). ``process=True`` runs
the proxy in a Python process of its own, so its threads never wait for the client's: the per-trip
cost comes close to ``delay_ms`` plus the loopback hops. The process stops when its stdin closes (at the
end of the ``with`` block, or when the caller dies), and is terminated if it does not stop within a few
seconds. The counters live in a small shared memory map, so they read the same in both modes.
"""
from __future__ import annotations

import collections
import contextlib
import mmap
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["LatencyProxy", "upstream_address", "delayed_engine", "delayed_connection", "proxy_url"]

_CHUNK = 65536


def upstream_address(kwargs: dict) -> tuple[int, Any]:
    """``(family, address)`` of the server described by psycopg connection keywords.

    A ``host`` that starts with ``/`` is a unix-socket directory (the embedded server): the socket
    is ``<dir>/.s.PGSQL.<port>``. Otherwise it is a TCP host and port (default localhost:5432).
    """
    host = kwargs.get("host") or "localhost"
    port = int(kwargs.get("port") or 5432)
    if host.startswith("/"):
        return socket.AF_UNIX, f"{host.rstrip('/')}/.s.PGSQL.{port}"
    if "," in host:
        raise ValueError("The latency proxy needs a single server host, not a list.")
    return socket.AF_INET, (host, port)


@dataclass
class _Pair:
    """One proxied connection: the client's socket and the server's."""

    client: socket.socket
    server: socket.socket
    threads: list[threading.Thread] = field(default_factory=list)


class LatencyProxy:
    """Forward TCP connections from 127.0.0.1:<port> to a PostgreSQL server, delaying client→server data.

    Use it as a context manager; ``port`` is known after entering. ``bytes_up`` / ``bytes_down``
    count what went to and came from the server, and ``messages_up`` how many reads from the client's socket
    were delayed: one per round trip for a client that waits for each reply; fewer than its messages for a
    pipelining client, whose writes can arrive together. ``process=True`` runs it in a process of its own (see the
    module docstring): same interface, same counters.
    """

    def __init__(self, upstream: tuple[int, Any], delay_ms: float = 0.0, *, process: bool = False,
                 _stats: Any = None) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be zero or positive")
        self.upstream = upstream
        self.delay_s = delay_ms / 1000.0
        self.process = process
        self.port: int | None = None
        # bytes_up, bytes_down, messages_up, connections: a list here, shared memory for a proxy process
        self._stats: Any = _stats if _stats is not None else [0, 0, 0, 0]
        self._stats_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._child: Any = None
        self._child_stop: Any = None
        self._finalizer: Any = None

    @property
    def delay_ms(self) -> float:
        return self.delay_s * 1000.0

    @property
    def bytes_up(self) -> int:
        return int(self._stats[0])

    @property
    def bytes_down(self) -> int:
        return int(self._stats[1])

    @property
    def messages_up(self) -> int:
        return int(self._stats[2])

    def _add(self, i: int, n: int) -> None:
        with self._stats_lock:
            self._stats[i] += n

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "LatencyProxy":
        """Listen on 127.0.0.1 (a free port) and accept connections in a background thread (or process)."""
        if self._listener is not None or self._child is not None:
            raise RuntimeError("The proxy is already running.")
        if self.process:
            return self._start_process()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))  # loopback only: nothing outside this machine can connect
        listener.listen(16)
        listener.settimeout(0.2)  # so the accept loop notices stop() promptly
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._acceptor = threading.Thread(target=self._accept_loop, name="latency-proxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def _start_process(self) -> "LatencyProxy":
        # A child Python process (not multiprocessing: its "spawn" re-imports the caller's main script, which a
        # script without an ``if __name__ == "__main__"`` guard does not survive). The counters are a small
        # memory-mapped file both processes map; the child stops when its stdin closes, so it cannot outlive us.
        fd, path = tempfile.mkstemp(prefix="pdw-latency-")
        try:
            os.write(fd, bytes(8 * 4))
            self._mmap = mmap.mmap(fd, 8 * 4)
        finally:
            os.close(fd)
        self._stats = memoryview(self._mmap).cast("q")
        family, address = self.upstream
        where = ["unix", address] if family == socket.AF_UNIX else ["inet", address[0], str(address[1])]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        try:
            child = subprocess.Popen([sys.executable, "-m", "helpers.latency", path, repr(self.delay_ms), *where],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)
        except BaseException:
            os.unlink(path)
            raise
        self._child = child
        self._finalizer = weakref.finalize(self, _end_child, child)
        try:
            ready, _, _ = select.select([child.stdout], [], [], 30)
            line = child.stdout.readline() if ready else b""
            if not line.strip().isdigit():
                raise RuntimeError("The latency proxy process did not start within 30 s"
                                   + (f" (exit code {child.poll()})." if child.poll() is not None else "."))
            self.port = int(line)
        except BaseException:
            self.stop()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # both processes have it mapped; the name is no longer needed
        return self

    def stop(self) -> None:
        """Close every socket and wait (briefly) for the threads, or the proxy process, to end."""
        if self._child is not None:
            if self._finalizer is not None:
                self._finalizer()  # stops the process once, even if stop() is called again
            self._stats = list(self._stats)  # keep the last counts readable
            self._stats[3] = 0
            self._child = None
            self._stopping.set()
            return
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            self._close_pair(pair)
        threads = [t for p in pairs for t in p.threads] + ([self._acceptor] if self._acceptor else [])
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout=2)
        self._listener = None
        self._acceptor = None

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        if self._child is not None:
            return self._child.poll() is None and not self._stopping.is_set()
        return self._listener is not None and not self._stopping.is_set()

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy."""
        if self.process:
            return int(self._stats[3])
        with self._lock:
            return len(self._pairs)

    # ------------------------------------------------------------------ the work

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                server = socket.socket(self.upstream[0], socket.SOCK_STREAM)
                server.settimeout(10)
                server.connect(self.upstream[1])
                server.settimeout(None)
            except OSError:
                client.close()  # the client sees the connection closed, as if the server were down
                continue
            client.settimeout(None)
            for s in (client, server):
                if s.family in (socket.AF_INET, socket.AF_INET6):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle: forward at once
            pair = _Pair(client, server)
            queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
            ready = threading.Condition()
            pair.threads = [
                threading.Thread(target=self._read_client, args=(pair, queue, ready), daemon=True,
                                 name="latency-proxy-up-read"),
                threading.Thread(target=self._write_server, args=(pair, queue, ready), daemon=True,
                                 name="latency-proxy-up-write"),
                threading.Thread(target=self._pump_down, args=(pair,), daemon=True, name="latency-proxy-down"),
            ]
            with self._lock:
                if self._stopping.is_set():
                    self._close_pair(pair)
                    break
                self._pairs.append(pair)
                self._stats[3] = len(self._pairs)
            for t in pair.threads:
                t.start()

    def _read_client(self, pair: _Pair, queue: collections.deque, ready: threading.Condition) -> None:
        """Stamp each client write with the time it may reach the server."""
        try:
            while True:
                data = pair.client.recv(_CHUNK)
                due = time.perf_counter() + self.delay_s
                if data:  # counted before it is forwarded, so before its reply can reach the client
                    self._add(2, 1)
                with ready:
                    queue.append((due, data or None))
                    ready.notify()
                if not data:
                    return
        except OSError:
            with ready:
                queue.append((0.0, None))
                ready.notify()

    def _write_server(self, pair: _Pair, queue: collections.deque, ready: threading.Condition) -> None:
        """Forward each client write once its delay is over, in order."""
        try:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                if data is None:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                pair.server.sendall(data)
                self._add(0, len(data))
        except OSError:
            pass
        self._finish(pair)

    def _pump_down(self, pair: _Pair) -> None:
        """Server replies go back to the client without delay."""
        try:
            while True:
                data = pair.server.recv(_CHUNK)
                if not data:
                    break
                pair.client.sendall(data)
                self._add(1, len(data))
        except OSError:
            pass
        self._finish(pair)

    def _finish(self, pair: _Pair) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
            self._stats[3] = len(self._pairs)
        self._close_pair(pair)

    @staticmethod
    def _close_pair(pair: _Pair) -> None:
        for s in (pair.client, pair.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def _end_child(child: Any) -> None:
    """Stop the proxy process: close its stdin (it stops), then terminate, then kill (each with a timeout)."""
    with contextlib.suppress(OSError):
        child.stdin.close()
    for step in (None, child.terminate, child.kill):
        if step is not None:
            step()
        try:
            child.wait(5 if step is None else 2)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(OSError):
        child.stdout.close()


def _child_main(argv: list[str]) -> None:
    """The proxy process (``python -m helpers.latency STATSFILE DELAY_MS unix PATH | inet HOST PORT``)."""
    path, delay_ms, kind, *where = argv
    upstream = (socket.AF_UNIX, where[0]) if kind == "unix" else (socket.AF_INET, (where[0], int(where[1])))
    with open(path, "r+b") as fh:
        mm = mmap.mmap(fh.fileno(), 8 * 4)
    proxy = LatencyProxy(upstream, float(delay_ms), _stats=memoryview(mm).cast("q"))
    proxy.start()
    sys.stdout.write(f"{proxy.port}\n")
    sys.stdout.flush()
    try:
        while sys.stdin.buffer.read(4096):  # until the parent closes our stdin (or dies)
            pass
    finally:
        proxy.stop()


def proxy_url(lesson: Any, port: int) -> Any:
    """SQLAlchemy URL of ``lesson``'s database through a proxy on 127.0.0.1:``port``."""
    from sqlalchemy.engine import URL

    kw = lesson.target.kwargs
    query = {k: str(v) for k, v in kw.items()
             if k not in ("user", "password", "host", "port", "dbname", "options", "application_name")}
    if upstream_address(kw)[0] == socket.AF_UNIX:
        query.setdefault("sslmode", "disable")  # a unix socket never speaks TLS; skip the negotiation
    return URL.create("postgresql+psycopg", username=kw.get("user") or None, password=kw.get("password") or None,
                      host="127.0.0.1", port=port, database=lesson.dbname, query=query)


@contextlib.contextmanager
def delayed_engine(lesson: Any, delay_ms: float, *, process: bool = False, **engine_kwargs: Any) -> Iterator[Any]:
    """A SQLAlchemy engine on ``lesson``'s database whose every round trip takes ``delay_ms`` longer (lesson 04).

    Starts a :class:`LatencyProxy`, yields an engine connected through it (same session options as
    ``lesson.engine``), and on exit disposes the engine and stops the proxy. ``engine.proxy`` is the
    proxy (byte counters). ``process=True``: the proxy runs in a process of its own (see the module docstring).
    """
    from sqlalchemy import create_engine

    from helpers.db import session_options

    with LatencyProxy(upstream_address(lesson.target.kwargs), delay_ms, process=process) as proxy:
        engine = create_engine(
            proxy_url(lesson, proxy.port),
            connect_args={"options": session_options(lesson.timeout), "application_name": f"pdw:{lesson.name}:delay",
                          "connect_timeout": 10},
            **engine_kwargs,
        )
        engine.proxy = proxy  # type: ignore[attr-defined]
        try:
            yield engine
        finally:
            engine.dispose()


@contextlib.contextmanager
def delayed_connection(lesson: Any, delay_ms: float, *, autocommit: bool = True,
                       process: bool = False) -> Iterator[Any]:
    """A psycopg connection to ``lesson``'s database whose every round trip takes ``delay_ms`` longer (lesson 05).

    Yields the connection and its :class:`LatencyProxy` (for its counters)::

        with delayed_connection(db, 1) as (conn, proxy):
            conn.execute("SELECT 1")
    """
    import psycopg

    from helpers.db import session_options

    kw = lesson.target.kwargs
    with LatencyProxy(upstream_address(kw), delay_ms, process=process) as proxy:
        url = proxy_url(lesson, proxy.port)
        extra = dict(url.query)
        conn = psycopg.connect(host="127.0.0.1", port=proxy.port, dbname=lesson.dbname, user=kw.get("user"),
                               password=kw.get("password"), options=session_options(lesson.timeout),
                               application_name=f"pdw:{lesson.name}:delay", connect_timeout=10,
                               autocommit=autocommit, **extra)
        try:
            yield conn, proxy
        finally:
            conn.close()


if __name__ == "__main__":
    _child_main(sys.argv[1:])
