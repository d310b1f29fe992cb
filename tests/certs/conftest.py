"""Certificates shared by the certs tests.

Key generation is fast for ECDSA, but building a fresh CA per test adds up, so bundles are
built once per module. ``NOW`` pins the clock for every check that does not involve a real TLS
handshake; handshakes use certificates valid at the real current time (OpenSSL has no clock
parameter).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certs.builder import CertBundle, KeyPair, build_bundle, new_ca

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SERVICE = "spacegate"
NAMESPACE = "spacegate-system"
SERVICE_HOST = "spacegate.spacegate-system.svc"  # the ServerName the apiserver sends


@pytest.fixture(scope="module")
def bundle() -> CertBundle:
    """A bundle for the in-cluster Service, minted at ``NOW``."""
    return build_bundle(SERVICE, NAMESPACE, now=NOW)


@pytest.fixture(scope="module")
def live_bundle() -> CertBundle:
    """A bundle valid right now, also naming localhost and 127.0.0.1, for real handshakes."""
    return build_bundle(SERVICE, NAMESPACE, extra_dns=["localhost"], extra_ips=["127.0.0.1"])


@pytest.fixture(scope="module")
def live_ca() -> KeyPair:
    """A CA valid right now, for issuing successive serving certificates (rotations)."""
    return new_ca()
