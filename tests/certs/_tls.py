"""Real TLS on loopback for the certs tests: a small echo server and a client handshake.

The server runs an asyncio loop in a thread, because that is how uvicorn serves TLS (asyncio's
``SSLObject`` path), while the tests drive blocking ``ssl`` clients from the main thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from cryptography import x509

T = TypeVar("T")


@dataclass(frozen=True)
class Peer:
    """What a client saw in the handshake."""

    serial: int
    alpn: str | None
    version: str | None


def client_context(ca_pem: bytes, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem``, as the apiserver trusts only its caBundle."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = check_hostname
    # Go (the apiserver) ignores the Common Name since 1.15; Python still falls back to it
    # unless told not to.
    context.hostname_checks_common_name = False
    context.set_alpn_protocols(["http/1.1"])
    return context


class TLSConnection:
    """An open client connection; ``echo`` proves it still carries data."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        self.peer = Peer(
            serial=x509.load_der_x509_certificate(der).serial_number,
            alpn=sock.selected_alpn_protocol(),
            version=sock.version(),
        )

    def echo(self, data: bytes = b"ping\n") -> bytes:
        self.sock.sendall(data)
        received = b""
        while not received.endswith(b"\n"):
            chunk = self.sock.recv(1024)
            if not chunk:
                break
            received += chunk
        return received

    def close(self) -> None:
        self.sock.close()


def connect(
    port: int, context: ssl.SSLContext, server_hostname: str | None = "localhost"
) -> TLSConnection:
    """Handshake with 127.0.0.1:``port``. ``server_hostname`` None or an IP sends no SNI."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return TLSConnection(context.wrap_socket(raw, server_hostname=server_hostname))
    except BaseException:
        raw.close()
        raise


def handshake(
    port: int, context: ssl.SSLContext, server_hostname: str | None = "localhost"
) -> Peer:
    """Connect, check the connection echoes, and report what the server presented."""
    connection = connect(port, context, server_hostname)
    try:
        assert connection.echo() == b"ping\n"
        return connection.peer
    finally:
        connection.close()


class EchoServer:
    """A line echo server on 127.0.0.1 with the given server context, in a background thread."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> EchoServer:
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.run(self._shutdown()).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the server's loop (e.g. a watcher)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            del self._handlers[task]
            writer.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        handlers = list(self._handlers.items())
        for _, writer in handlers:
            writer.close()  # the handler's readline then sees the end of the stream
        await asyncio.gather(*(task for task, _ in handlers), return_exceptions=True)
        await self._server.wait_closed()
