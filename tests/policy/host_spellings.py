"""Hypothesis strategies: registries with listed hosts, and every way an image may spell them.

:func:`registries` draws a config of a few registries on distinct servers (DNS names, IPv4 and
IPv6 addresses, Docker Hub, the node's loopback; with and without ports, over https or http).
:func:`spelling_of` draws another spelling of one listed host that reaches the same server
(case, leading zeros of the port, the default port written or left out, IPv6 written forms,
IPv4-mapped IPv6, the numeric IPv4 forms of ``inet_aton``, Docker Hub's names, the node's own
names); :func:`other_host` one that reaches another server. Shared by
``tests/policy/test_host_identity.py`` and the keyring property of
``tests/policy/test_reference_oracle.py``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hypothesis import strategies as st

# Written out here, not imported from policy.hosts: the strategies must not inherit a
# mistake of the code they test.
DEFAULT_PORTS = {"https": 443, "http": 80}
DOCKER_HUB_NAMES = (
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.docker.io",
    "registry.hub.docker.com",
)

# Distinct servers: each drawn registry takes a different base, so no two share an identity.
BASES = (
    "harbor.example.com",
    "registry.local",
    "a-b.c9.io",
    "10.0.0.5",
    "192.168.7.9",
    "[fd00::5]",
    "[2001:db8:0:1::a]",
    "docker.io",
    "localhost",
)


@dataclass(frozen=True)
class Listed:
    """One registry of a drawn config: its name, URL scheme and listed host."""

    name: str
    scheme: str
    host: str  # canonical: base[:port]

    @property
    def base(self) -> str:
        return self.host.rpartition(":")[0] if _has_port(self.host) else self.host

    @property
    def port(self) -> int | None:
        return int(self.host.rpartition(":")[2]) if _has_port(self.host) else None

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]


def _has_port(host: str) -> bool:
    return ":" in host.rpartition("]")[2]


@st.composite
def registries(
    draw: st.DrawFn, *, anonymous_pull: bool = True
) -> tuple[dict[str, object], list[Listed]]:
    """A config document (``unknownRegistry: deny``) of 1-3 registries, and what each lists."""
    bases = draw(st.lists(st.sampled_from(BASES), min_size=1, max_size=3, unique=True))
    listed = []
    for i, base in enumerate(bases):
        scheme = draw(st.sampled_from(["https", "https", "http"]))
        port = draw(st.sampled_from([None, None, DEFAULT_PORTS[scheme], 5000, 8443]))
        if base == "docker.io":
            scheme, port = "https", None
        listed.append(Listed(f"r{i}", scheme, base if port is None else f"{base}:{port}"))
    document: dict[str, object] = {
        "policy": {"unknownRegistry": "deny"},
        "registries": [
            {
                "name": r.name,
                "type": "docker-registry",
                "url": f"{r.scheme}://{r.host}",
                "hosts": [r.host],
                "anonymousPull": anonymous_pull,
            }
            for r in listed
        ],
    }
    return document, listed


def _case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(text, upper, strict=True))
    )


def _c_integer(value: int) -> st.SearchStrategy[str]:
    """``value`` as C writes integers: decimal, octal with a leading 0, hexadecimal."""
    return st.one_of(
        st.just(str(value)),
        st.integers(1, 3).map(lambda zeros: "0" * zeros + format(value, "o")),
        st.tuples(st.sampled_from(["0x", "0X"]), st.booleans(), st.integers(0, 2)).map(
            lambda t: t[0] + "0" * t[2] + format(value, "X" if t[1] else "x")
        ),
    )


@st.composite
def _ipv4(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """``address`` as ``inet_aton`` reads it (1-4 parts), or as an IPv4-mapped IPv6 address."""
    if draw(st.integers(0, 4)) == 0:
        return draw(_ipv6(ipaddress.IPv6Address(f"::ffff:{address}")))
    octets = list(address.packed)
    parts = draw(st.integers(1, 4))
    head, tail = octets[: parts - 1], octets[parts - 1 :]
    last = int.from_bytes(bytes(tail), "big")
    return ".".join([*(draw(_c_integer(o)) for o in head), draw(_c_integer(last))])


@st.composite
def _ipv6(draw: st.DrawFn, address: ipaddress.IPv6Address) -> str:
    """``address`` bracketed: groups with or without leading zeros, any case, compressed or
    not."""
    groups = address.exploded.split(":")
    written = [draw(st.sampled_from([g, g.lstrip("0") or "0"])) for g in groups]
    text = ":".join(written)
    if draw(st.booleans()):
        text = str(ipaddress.IPv6Address(text))  # compressed
    return "[" + draw(_case(text)) + "]"


@st.composite
def _node(draw: st.DrawFn) -> str:
    """A name or address of the node itself."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(_case(draw(st.sampled_from(["localhost", "registry.localhost"]))))
    if choice == 1:
        return draw(_ipv4(ipaddress.IPv4Address("127.0.0.1") + draw(st.integers(0, 2**24 - 1))))
    if choice == 2:
        return draw(_ipv6(ipaddress.IPv6Address("::1")))
    if choice == 3:
        return draw(_ipv4(ipaddress.IPv4Address(0)))  # 0.0.0.0: Linux connects it locally
    return draw(_ipv6(ipaddress.IPv6Address(0)))  # [::], likewise


@st.composite
def _name_spelling(draw: st.DrawFn, base: str) -> str:
    if base == "docker.io":
        return draw(_case(draw(st.sampled_from(sorted(DOCKER_HUB_NAMES)))))
    if base == "localhost":
        return draw(_node())
    if base.startswith("["):
        return draw(_ipv6(ipaddress.IPv6Address(base[1:-1])))
    address = _ipv4_or_none(base)
    if address is None:
        return draw(_case(base))
    return draw(_ipv4(address))


def _port_text(port: int) -> st.SearchStrategy[str]:
    return st.integers(0, 3).map(lambda zeros: ":" + "0" * zeros + str(port))


@st.composite
def spelling_of(draw: st.DrawFn, listed: Listed) -> str:
    """An image domain that reaches the server ``listed`` names."""
    name = draw(_name_spelling(listed.base))
    default = DEFAULT_PORTS[listed.scheme]
    if listed.base == "docker.io":
        port = draw(st.one_of(st.just(""), _port_text(443)))
    elif listed.effective_port == default:
        port = draw(st.one_of(st.just(""), _port_text(default)))
    else:
        port = draw(_port_text(listed.effective_port))
    return name + port


@st.composite
def other_host(draw: st.DrawFn, listed: Listed) -> str:
    """An image domain that reaches another server than ``listed`` names: the same name on
    another port, a neighbouring address, or a lookalike name."""
    base = listed.base
    if base != "docker.io" and draw(st.booleans()):
        ports = [p for p in (443, 80, 5000, 8443, 9999) if p != listed.effective_port]
        return draw(_name_spelling(base)) + draw(_port_text(draw(st.sampled_from(ports))))
    if base.startswith("["):
        name = draw(_ipv6(ipaddress.IPv6Address(base[1:-1]) + draw(st.integers(1, 1000))))
    elif base == "localhost":
        name = draw(_ipv4(ipaddress.IPv4Address("10.9.8.7")))
    elif _ipv4_or_none(base) is not None:
        name = draw(_ipv4(ipaddress.IPv4Address(base) + draw(st.integers(1, 1000))))
    else:  # prefix matching on raw strings is a known bypass (gatekeeper-library #529)
        lookalikes = [f"x{base}", f"{base}.evil.io", f"docker-{base}", "hub.docker.com"]
        name = draw(_case(draw(st.sampled_from(lookalikes))))
    port = "" if listed.port is None else draw(_port_text(listed.port))
    return name + port


def _ipv4_or_none(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None
