"""Registry hosts: one canonical identity per registry host, and the spellings the kubelet keys.

An image's domain picks the registry whose rules apply, so every spelling a node would dial to
the same server must pick the same registry; otherwise a tenant writes a listed registry in
another spelling and it becomes an "unknown registry" (``docs/decisions.md``, "One identity per
registry host"). Two notions live here:

- the **canonical spelling** (:func:`canonical_host`): the host as written, with what cannot
  change the server taken out: case, a trailing dot, leading zeros of the port, an IPv6
  address's written form (``[fd00:0::5]`` is ``[fd00::5]``), an IPv4-mapped IPv6 address
  (``[::ffff:a00:5]`` is ``10.0.0.5``, which Go dials as IPv4), and the numeric IPv4 forms
  glibc's ``inet_aton`` reads (``167772165``, ``0xa.0.0.5``, ``010.0.0.5`` = 8.0.0.5, ``10.5``),
  which getaddrinfo turns into an address when the container runtime resolves with cgo;
- the **identity** (:func:`host_identity`): the canonical spelling with aliases folded in:
  every name Docker Hub answers as is ``docker.io``, on any port; every name and address of the
  node itself (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``, ``0.0.0.0``, ``::``) is
  ``localhost``.

Registries are found by identity (``policy.snapshot``). The config's ``hosts`` are kept as
canonical spellings: they are the pull Secret's ``auths`` keys (``policy.provisioning``), and
the kubelet matches those keys against the image's domain exactly as written
(:func:`kubelet_uses_key`), so a spelling that names a registry but no key pulls without its
credentials; ``policy.rules`` refuses it where credentials are needed.

Pure: ``ipaddress`` only, never a resolver.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PORTS",
    "DOCKER_HUB",
    "DOCKER_HUB_NAMES",
    "HOST_PORT",
    "LOOPBACK",
    "Host",
    "HostError",
    "canonical_host",
    "default_port_alias",
    "host_identity",
    "inet_aton",
    "kubelet_uses_key",
    "server_identity",
]

# What the config accepts as a host: a DNS name (an optional trailing dot) or a bracketed IPv6
# address, with an optional port. Image domains are whatever the reference grammar allows.
HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
    r"|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?",
    re.ASCII,
)

DEFAULT_PORTS = {"https": 443, "http": 80}

DOCKER_HUB = "docker.io"
# Every name the Docker Hub registry answers as (``registry-1.docker.io`` is where containerd
# sends ``docker.io``; ``index.docker.io`` is the reference parser's legacy spelling; the other
# two are Docker's own). Docker Inc. runs every port of these, so the port is no other server.
DOCKER_HUB_NAMES = frozenset(
    {
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "registry.docker.io",
        "registry.hub.docker.com",
    }
)
LOOPBACK = "localhost"

_LEGACY_DOCKER_HUB_KEY = "index.docker.io"


class HostError(ValueError):
    """A host string that is not a host[:port]."""


@dataclass(frozen=True, slots=True, order=True)
class Host:
    """A host in canonical form: ``name`` (lowercase DNS name, dotted-quad IPv4 or bracketed
    compressed IPv6) and ``port`` (None: none written, the registry's default applies)."""

    name: str
    port: int | None = None

    def __str__(self) -> str:
        return self.name if self.port is None else f"{self.name}:{self.port}"


def split_host(text: str) -> tuple[str, str | None]:
    """``host[:port]`` as (host, port digits or None); brackets kept on an IPv6 address."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostError(f"{text!r}: an IPv6 address without its closing bracket")
        rest = text[end + 1 :]
        if not rest:
            return text, None
        if not rest.startswith(":"):
            raise HostError(f"{text!r}: unexpected {rest!r} after the IPv6 address")
        return text[: end + 1], rest[1:]
    name, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    return name, port


def inet_aton(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address glibc's ``inet_aton`` reads in ``name``, or None.

    One to four parts separated by dots, each a C integer (``0x`` hexadecimal, a leading
    ``0`` octal, else decimal); the last part fills the remaining bytes (``10.5`` is
    10.0.0.5, ``167772165`` is 10.0.0.5). getaddrinfo reads a host this way before any
    lookup, so a runtime resolving through glibc dials the address, not a name.
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _c_integer(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    address = 0
    for value in head:
        address = (address << 8) | value
    return ipaddress.IPv4Address((address << (8 * (4 - len(head)))) | last)


def _c_integer(text: str) -> int | None:
    """``strtoul(text, &end, 0)`` when it consumes all of ``text``, which starts with a digit;
    None otherwise (or past 32 bits, which ``inet_aton`` refuses)."""
    if text[:2] in ("0x", "0X"):
        digits, base, allowed = text[2:], 16, "0123456789abcdefABCDEF"
    elif text[:1] == "0":
        digits, base, allowed = text, 8, "01234567"
    else:
        digits, base, allowed = text, 10, "0123456789"
    if not digits or any(c not in allowed for c in digits):
        return None
    value = int(digits, base)
    return value if value <= 0xFFFFFFFF else None


def canonical_host(text: str) -> Host:
    """``text`` (an image domain or a config host) in its canonical spelling (module doc).

    Raises :class:`HostError` for a port that is not a number.
    """
    name, port_text = split_host(text)
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii():
            raise HostError(f"{text!r}: the port {port_text!r} is not a number")
        port = int(port_text)
    if name.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return Host(name.lower(), port)  # no address a node could dial: kept as written
        mapped = v6.ipv4_mapped
        if mapped is not None:
            return Host(str(mapped), port)
        return Host(f"[{v6.compressed}]", port)
    name = name.lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    v4 = inet_aton(name)
    if v4 is not None:
        return Host(str(v4), port)
    return Host(name, port)


_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)


def _is_loopback(name: str) -> bool:
    """The node itself: ``localhost``, ``*.localhost``, a loopback or unspecified address
    (Linux connects ``0.0.0.0`` and ``::`` to the local host). ``name`` is canonical."""
    if name == LOOPBACK or name.endswith("." + LOOPBACK):
        return True
    if name.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return False
        return v6.is_loopback or v6.is_unspecified
    if _DOTTED_QUAD.fullmatch(name):  # canonical IPv4: inet_aton forms are already read
        v4 = ipaddress.IPv4Address(name)
        return v4.is_loopback or v4.is_unspecified
    return False


# Image domains are few in a cluster and each review names them again; hostile ones are
# bounded in length by the reference parser and in number by this cache.
_IDENTITY_CACHE_SIZE = 4096


def host_identity(host: Host | str) -> Host:
    """The registry host ``host`` reaches: its canonical spelling with aliases folded in.

    Docker Hub's names are ``docker.io`` with no port; the node's own names and addresses are
    ``localhost`` on the port written. Spellings with one identity reach one server. Raises
    :class:`HostError` for a malformed host.
    """
    if isinstance(host, str):
        return _identity_of(host)
    return _fold(host)


@functools.lru_cache(maxsize=_IDENTITY_CACHE_SIZE)
def _identity_of(text: str) -> Host:
    return _fold(canonical_host(text))


def _fold(canonical: Host) -> Host:
    if canonical.name in DOCKER_HUB_NAMES:
        return Host(DOCKER_HUB)
    if _is_loopback(canonical.name):
        return Host(LOOPBACK, canonical.port)
    return canonical


def server_identity(host: Host, scheme: str) -> Host:
    """The server a listed host names for a registry served over ``scheme``: its identity,
    with the scheme's default port where none is written."""
    port = host.port if host.port is not None else DEFAULT_PORTS[scheme]
    return host_identity(Host(host.name, port))


def default_port_alias(host: Host, scheme: str) -> Host | None:
    """The other spelling of ``host`` on the registry URL's default port, if it has one.

    ``harbor.example.com`` and ``harbor.example.com:443`` name the same server (for an
    ``https`` registry; ``:80`` for ``http``), and a container runtime pulls from either;
    but the kubelet compares ports exactly. Each host therefore implies its alias: the bare
    host its default-port form, and the default-port form the bare host. None for a host on
    another port.
    """
    default_port = DEFAULT_PORTS[scheme]
    if host.port is None:
        return Host(host.name, default_port)
    if host.port == default_port:
        return Host(host.name)
    return None


def kubelet_uses_key(keys: Iterable[str], domain: str) -> bool:
    """Whether the kubelet's keyring would use a pull Secret whose ``auths`` keys are ``keys``
    (canonical spellings, as ``hosts`` holds them) for an image on ``domain`` (as written).

    The keyring (``pkg/credentialprovider``, ``URLsMatch``) splits key and image host at
    ``:`` and ``.`` and compares ports as strings and labels with ``filepath.Match``: for keys
    without wildcards that is string equality, except that a bracketed IPv6 key without a
    port never matches (``[`` opens a character class; with a port, Go's ``SplitHostPort``
    strips the brackets first). When no key matches a Docker Hub name, the keyring falls
    back to an ``index.docker.io`` key. ``tests/policy/test_reference_oracle.py`` holds this
    to the kubelet's own code.
    """
    usable = {key for key in keys if not (key.startswith("[") and key.endswith("]"))}
    if domain in usable:
        return True
    return _LEGACY_DOCKER_HUB_KEY in usable and _is_default_registry_match(domain)


def _is_default_registry_match(domain: str) -> bool:
    """The keyring's ``isDefaultRegistryMatch`` for an image on ``domain``."""
    if not domain:
        return False
    return domain in (DOCKER_HUB, _LEGACY_DOCKER_HUB_KEY) or not ("." in domain or ":" in domain)
