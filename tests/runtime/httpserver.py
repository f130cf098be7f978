"""A scriptable HTTP/1.1 test server on 127.0.0.1 that records the requests it receives.

Each route maps a path to a handler ``(Recorded) -> Reply``; :func:`sequence` scripts a status
sequence, :func:`redirect` and :func:`echo` cover the common cases. A reply can hold its answer
until a :class:`threading.Event` is set, which makes "slow" responses without sleeping.
The server runs in a thread, so it works with any client, sync or async.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Recorded:
    """A request the server received; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """What to answer. A ``body`` that is not bytes or str is sent as JSON."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = b""
    hold: threading.Event | None = None  # answer only once this is set (or the server stops)
    close: bool = False  # send "Connection: close" and drop the connection

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode("utf-8"), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode("utf-8"), headers


Handler = Callable[[Recorded], Reply]


def sequence(*replies: Reply) -> Handler:
    """Answer with ``replies`` in turn, repeating the last one."""
    lock = threading.Lock()
    state = {"next": 0}

    def handle(_request: Recorded) -> Reply:
        with lock:
            index = min(state["next"], len(replies) - 1)
            state["next"] += 1
        return replies[index]

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return lambda _request: Reply(status, {"Location": location})


def echo(request: Recorded) -> Reply:
    """Answer with the request as JSON: method, path, headers, body text."""
    body = request.body.decode("utf-8", errors="replace")
    return Reply(
        200,
        body={
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body": body,
        },
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients under test hang up mid-response on purpose (size caps, timeouts, TLS
        # failures); socketserver would print a traceback for each.
        pass


class HttpServer:
    """``with HttpServer() as server: server.route("/x", handler); server.url("/x")``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._holds: list[threading.Event] = []
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # The listening socket is bound and listening once the constructor returns, so clients can
    # connect (they queue in the backlog) before serve_forever picks them up: no readiness race.
    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            holds = list(self._holds)
        for hold in holds:
            hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path: str, handler: Handler | Reply) -> None:
        if isinstance(handler, Reply):
            reply = handler
            handler = lambda _request: reply  # noqa: E731
        with self._lock:
            self._routes[path] = handler

    def received(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            handler = self._routes.get(request.path.partition("?")[0])
        if handler is None:
            return Reply(404, body="no such route")
        reply = handler(request)
        if reply.hold is not None:
            with self._lock:
                self._holds.append(reply.hold)
            # Bounded so a broken test cannot hang the run; stop() releases it at once.
            reply.hold.wait(timeout=30)
        return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorded = Recorded(self.command, self.path, headers, body)
                reply = server._dispatch(recorded)
                if server._stopping.is_set():
                    self.close_connection = True
                    return
                data, reply_headers = reply.encoded()
                self.send_response(reply.status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                if "content-length" not in {k.lower() for k in reply_headers}:
                    self.send_header("Content-Length", str(len(data)))
                if reply.close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return _Handler


def serving(tls: ssl.SSLContext | None = None) -> Iterator[HttpServer]:
    """Generator for a pytest fixture: ``yield from serving()``."""
    with HttpServer(tls) as server:
        yield server
