"""Free TCP ports on 127.0.0.1 for the servers the tests and benchmarks start.

Servers in tests are only ever bound to and dialled on loopback (the control plane's
:data:`~tests.support.controlplane.plane.LOOPBACK`), never a wildcard address.
"""

from __future__ import annotations

import socket

from tests.support.controlplane.plane import LOOPBACK


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
