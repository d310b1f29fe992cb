"""Test doubles for the systems spacegate talks to, served over real HTTP on 127.0.0.1.

The sources are tested through a real socket (timeouts, dropped connections and headers
behave as in production), so every fake is an ASGI app run by uvicorn in a background
thread with its own event loop: tests may be sync or async, and a test's event loop can
never starve the fake. This module holds what the fakes share:

- :class:`ServerThread` starts an app on a free port and stops it;
- :class:`Faults` queues misbehaviours (error statuses, slow answers, truncated or invalid
  JSON, dropped connections) that the next requests receive in order;
- :class:`FaultMiddleware` applies them in front of any app and records each request
  (method, path, query, auth scheme and username — never a password).

Fakes: ``tests.fakes.harbor.HarborFake`` (Harbor's project API),
``tests.fakes.registry.RealRegistry`` (the real ``docker-registry`` binary) and
``tests.fakes.registry.TokenRegistryFake`` (a bearer-token realm in front of a catalog).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

import orjson
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "Fault",
    "FaultMiddleware",
    "Faults",
    "RecordedRequest",
    "ServerThread",
    "basic_auth",
]

FaultKind = Literal["pass", "status", "delay", "truncate", "drop", "garbage"]


def basic_auth(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an ``Authorization: Basic`` header, if it is one.

    Splits on the first ``:`` only, so ``robot$team+ci`` usernames and passwords with
    colons survive as Harbor parses them (Go's ``Request.BasicAuth``).
    """
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued misbehaviour."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What a fake saw of one request; the password is never kept."""

    method: str
    path: str
    query: str
    auth_scheme: str | None  # "basic", "bearer" or None
    username: str | None  # from basic auth


class Faults:
    """A FIFO of faults; each request to a faulty path takes the next one.

    Knobs return the queue, so they chain: ``faults.pass_next(2).truncate_next()`` leaves
    two requests alone and truncates the third. Thread-safe: tests queue faults from the test thread while the server pops them.
    """

    def __init__(self) -> None:
        self._queue: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()

    def _add(self, n: int, fault: Fault) -> Faults:
        with self._lock:
            self._queue.extend([fault] * n)
        return self

    def pass_next(self, n: int = 1) -> Faults:
        """The next ``n`` requests are answered normally (to aim later faults at page 3)."""
        return self._add(n, Fault("pass"))

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: str | None = None) -> Faults:
        """The next ``n`` requests get ``status`` with a Harbor/Distribution error body."""
        return self._add(n, Fault("status", status=status, retry_after=retry_after))

    def delay_next(self, n: int = 1, *, seconds: float) -> Faults:
        """The next ``n`` requests are answered normally, after ``seconds``."""
        return self._add(n, Fault("delay", seconds=seconds))

    def truncate_next(self, n: int = 1) -> Faults:
        """The next ``n`` answers keep their status but lose the second half of the body
        (with a matching ``Content-Length``: the HTTP exchange is valid, the JSON is not)."""
        return self._add(n, Fault("truncate"))

    def drop_next(self, n: int = 1) -> Faults:
        """The next ``n`` answers announce the full body, send half, and close the socket."""
        return self._add(n, Fault("drop"))

    def garbage_next(self, n: int = 1) -> Faults:
        """The next ``n`` requests get ``200`` with an HTML page (a proxy's login page)."""
        return self._add(n, Fault("garbage"))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def pop(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None


_REASONS = {
    429: ("TOO_MANY_REQUEST", "too many requests"),
    500: ("UNKNOWN", "internal server error"),
    502: ("UNKNOWN", "bad gateway"),
    503: ("UNKNOWN", "service unavailable"),
    504: ("UNKNOWN", "gateway timeout"),
}


class FaultMiddleware:
    """Applies queued :class:`Faults` to HTTP requests whose path starts with ``prefix``
    and records every request in ``requests``."""

    def __init__(self, app: ASGIApp, faults: Faults, *, prefix: str = "/") -> None:
        self.app = app
        self.faults = faults
        self.prefix = prefix
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def forget(self) -> None:
        with self._lock:
            self.requests.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._record(scope)
        fault = self.faults.pop() if scope["path"].startswith(self.prefix) else None
        if fault is None or fault.kind == "pass":
            await self.app(scope, receive, send)
        elif fault.kind == "status":
            await _send_status(send, fault)
        elif fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "garbage":
            body = b"<html><body><h1>Sign in</h1></body></html>"
            await _send(send, 200, [(b"content-type", b"text/html")], body)
        else:
            await self._mangle(fault.kind, scope, receive, send)

    def _record(self, scope: Scope) -> None:
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        scheme = header.split(" ", 1)[0].lower() if header else None
        creds = basic_auth(header)
        entry = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            auth_scheme=scheme,
            username=creds[0] if creds else None,
        )
        with self._lock:
            self.requests.append(entry)

    async def _mangle(self, kind: FaultKind, scope: Scope, receive: Receive, send: Send) -> None:
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        start = captured[0]
        body = b"".join(m.get("body", b"") for m in captured[1:])
        half = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if kind == "truncate":
            await _send(send, start["status"], headers, half)
            return
        # drop: promise the whole body, deliver half, and return without finishing; uvicorn
        # then closes the connection, which the client sees as a peer disconnect.
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": half, "more_body": True})


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_status(send: Send, fault: Fault) -> None:
    code, message = _REASONS.get(fault.status, ("UNKNOWN", "error"))
    body = orjson.dumps({"errors": [{"code": code, "message": message}]}) + b"\n"
    headers = [(b"content-type", b"application/json; charset=utf-8")]
    if fault.retry_after is not None:
        headers.append((b"retry-after", fault.retry_after.encode()))
    await _send(send, fault.status, headers, body)


class ServerThread:
    """Serves an ASGI app with uvicorn on ``127.0.0.1:<free port>`` in a daemon thread.

    The socket is bound here, before the thread starts, so the port is known and owned
    at once (no race with another process picking the same free port).
    """

    def __init__(self, app: ASGIApp, *, name: str = "fake") -> None:
        self._app = app
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # log_config/log_level None: leave the process's logging configuration alone
        # (uvicorn would otherwise dictConfig its loggers each time a fake starts).
        config = uvicorn.Config(
            self._app,
            http="h11",
            lifespan="off",
            log_config=None,
            log_level=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"{self._name}: the server thread died while starting")
            if waited > timeout:
                server.should_exit = True
                raise RuntimeError(f"{self._name}: did not start within {timeout}s")
            deadline.wait(0.01)
            waited += 0.01
        self._server, self._thread = server, thread
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


class Startable:
    """``with fake:`` starts it and stops it, for any fake with ``start()``/``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedFake(Startable):
    """Start/stop and ``url`` for a fake served by a :class:`ServerThread`.

    Subclasses set ``self._server`` in ``__init__``.
    """

    _server: ServerThread

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if not self._server.url:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.url

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
