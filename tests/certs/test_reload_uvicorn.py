"""The reloading context under a real uvicorn server, wired the way ``webhook.admission.server`` does it.

uvicorn builds its SSL context once; ``ssl_context_factory`` (uvicorn >= 0.47) hands it ours
instead, and our SNI callback does the rest. Run on both event loops uvicorn may pick, because
uvloop has its own TLS transport.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from certs.builder import KeyPair, issue_serving_cert
from certs.reload import ReloadingTLSContext
from tests.certs._tls import client_context


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def issue(ca: KeyPair) -> KeyPair:
    return issue_serving_cert(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"])


def write_pair(directory: Path, pair: KeyPair) -> None:
    (directory / "tls.key").write_bytes(pair.key)
    (directory / "tls.crt").write_bytes(pair.cert)


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


class Client:
    """One keep-alive HTTPS connection, like the apiserver's pooled client."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)

    def get(self, path: str) -> str:
        self.connection.request("GET", path)
        return self.connection.getresponse().read().decode()

    @property
    def serial(self) -> int:
        sock = self.connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def close(self) -> None:
        self.connection.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_name(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "uvloop":
        pytest.importorskip("uvloop")
    return name


@pytest.fixture
def served(
    loop_name: str, live_ca: KeyPair, tmp_path: Path
) -> Iterator[tuple[int, ReloadingTLSContext]]:
    write_pair(tmp_path, issue(live_ca))
    tls = ReloadingTLSContext(tmp_path / "tls.crt", tmp_path / "tls.key")
    config = uvicorn.Config(
        Starlette(routes=[Route("/healthz", healthz)]),
        ssl_context_factory=lambda _config, _default: tls.context,
        loop=loop_name,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], tls
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_uvicorn_serves_the_rotated_certificate_to_new_connections_without_a_restart(
    served: tuple[int, ReloadingTLSContext], live_ca: KeyPair, tmp_path: Path
) -> None:
    port, tls = served
    client = client_context(live_ca.cert)
    before = Client(port, client)
    try:
        assert before.get("/healthz") == "ok"
        first_serial = before.serial

        rotated = issue(live_ca)
        write_pair(tmp_path, rotated)
        assert tls.maybe_reload() is True

        after = Client(port, client)
        try:
            assert after.get("/healthz") == "ok"
            assert after.serial == serial_of(rotated.cert) != first_serial
        finally:
            after.close()
        # The keep-alive connection from before the rotation goes on undisturbed.
        assert before.get("/healthz") == "ok"
        assert before.serial == first_serial
    finally:
        before.close()
