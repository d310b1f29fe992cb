"""What the apiserver itself does when a webhook call breaks: a reset, a close, a timeout.

The load client's retries stand in for what a controller does after a failed create; before
counting them one must know what the apiserver already does on its own. :func:`probe_apiserver`
points one extra validating webhook (``failurePolicy: Fail``, ``timeoutSeconds: 2``, only for
namespaces labelled ``chaos-probe: "1"``) at :class:`_Breaker`, a TLS server on loopback
that reads each request and then, by mode:

- ``reset``: closes with ``SO_LINGER`` 0, so the apiserver gets a TCP RST (a process
  killed mid-request);
- ``close``: closes cleanly without answering (EOF);
- ``hang``: never answers (a stuck process, or a SYN into a black hole).

For each mode it creates one Pod and reports how many requests the webhook received for it,
how long the create took, and what the apiserver answered. (Reading k8s.io/client-go's
``rest/request.go``: a POST is never retried on a reset or EOF, since writes are not
idempotent; it is retried only on an answer carrying ``Retry-After``. This measures it.)
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from certs.builder import issue_serving_cert, new_ca
from tests.support.controlplane.plane import LOOPBACK, ControlPlane
from tests.support.manifests import pod
from tests.support.ports import free_port
from tests.support.waiting import eventually

__all__ = ["ProbeResult", "probe_apiserver"]

Mode = Literal["reset", "close", "hang"]
NAME = "chaos-probe"


@dataclass(frozen=True)
class ProbeResult:
    mode: str
    calls: int  # requests the webhook received for one create
    seconds: float
    status: int
    message: str


class _Breaker:
    """A TLS listener that reads a request, then breaks the connection as ``mode`` says."""

    def __init__(self, workdir: Path) -> None:
        self.ca = new_ca(common_name="chaos probe CA")
        leaf = issue_serving_cert(self.ca, dns_names=["localhost"], ip_addresses=[LOOPBACK])
        (workdir / "probe.crt").write_bytes(leaf.cert)
        (workdir / "probe.key").write_bytes(leaf.key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(workdir / "probe.crt", workdir / "probe.key")
        self.mode: Mode = "close"
        self.calls = 0
        self.port = free_port()
        self._listener = socket.create_server((LOOPBACK, self.port))
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True, name="probe").start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.calls += 1
            if self.mode == "hang":
                self._held.append(tls)
                return
            if self.mode == "reset":
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tls.close() if self.mode == "close" else raw.close()
        except (OSError, ssl.SSLError):
            return

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for held in self._held:
            with contextlib.suppress(OSError):
                held.close()


def _configuration(port: int, ca_pem: bytes) -> dict[str, object]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [
            {
                "name": "probe.chaos.spacegate.io",
                "clientConfig": {
                    "url": f"https://{LOOPBACK}:{port}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {NAME: "1"}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }


def probe_apiserver(plane: ControlPlane, workdir: Path) -> list[ProbeResult]:
    """One create per mode against the breaking webhook (see the module doc)."""
    breaker = _Breaker(workdir)
    hooks = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    results: list[ProbeResult] = []
    with plane.http_client(timeout=30) as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": NAME, "labels": {NAME: "1"}}})
        created = http.post(hooks, json=_configuration(breaker.port, breaker.ca.cert))
        assert created.status_code == 201, created.text
        try:
            pods = f"/api/v1/namespaces/{NAME}/pods"

            def called() -> bool:
                return "probe.chaos" in http.post(pods, json=pod("warm", "x:1")).text

            eventually(called, "the probe webhook to be called", timeout=30)
            modes: tuple[Mode, ...] = ("reset", "close", "hang")
            for mode in modes:
                breaker.mode = mode
                breaker.calls = 0
                began = time.monotonic()
                answer = http.post(pods, json=pod(f"probe-{mode}", "x:1"))
                seconds = time.monotonic() - began
                time.sleep(0.5)  # a retry would have arrived by now
                message = str(answer.json().get("message", ""))
                results.append(
                    ProbeResult(mode, breaker.calls, seconds, answer.status_code, message)
                )
        finally:
            http.delete(f"{hooks}/{NAME}")
            http.delete(f"/api/v1/namespaces/{NAME}")
            breaker.stop()
    return results
