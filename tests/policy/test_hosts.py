"""Registry hosts: which strings are hosts, their canonical spelling and identity, their
default-port alias, and the kubelet's exact matching of pull-secret keys."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.hosts import (
    HOST_PORT,
    Host,
    HostError,
    canonical_host,
    default_port_alias,
    host_identity,
    inet_aton,
    kubelet_uses_key,
    server_identity,
)


@pytest.mark.parametrize(
    "host",
    [
        "harbor.example.com",
        "harbor",
        "10.0.0.5:5000",
        "[fd00::5]:5000",
        "[::1]",
        "a-b.c",
        "harbor.example.com.",
        "harbor.example.com.:443",
    ],
)
def test_names_addresses_and_ports_are_image_domains(host: str) -> None:
    assert HOST_PORT.fullmatch(host)


@pytest.mark.parametrize(
    "host",
    [
        "https://harbor",
        "harbor/team",
        "user@harbor",
        "-harbor",
        "harbor-",
        "harbor:",
        "[::1",
        "é.com",
        "harbor..com",
        ".",
    ],
)
def test_urls_paths_credentials_and_malformed_names_are_not(host: str) -> None:
    assert not HOST_PORT.fullmatch(host)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Harbor.Example.COM:5000", "harbor.example.com:5000"),
        ("harbor.example.com.", "harbor.example.com"),
        ("harbor.example.com:0443", "harbor.example.com:443"),
        ("registry.demo.local:05000", "registry.demo.local:5000"),
        ("[FD00::5]:5000", "[fd00::5]:5000"),
        ("[fd00:0::5]", "[fd00::5]"),
        ("[fd00:0000:0000:0000:0000:0000:0000:0005]", "[fd00::5]"),
        ("[::ffff:a00:5]", "10.0.0.5"),
        ("[::FFFF:A00:5]:5000", "10.0.0.5:5000"),
        ("167772165:5000", "10.0.0.5:5000"),
        ("0xa.0.0.5", "10.0.0.5"),
        ("0XA.0X0.0.0X5", "10.0.0.5"),
        ("010.0.0.5", "8.0.0.5"),
        ("012.0.0.05", "10.0.0.5"),
        ("10.5", "10.0.0.5"),
        ("10.0.5", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_spellings_that_cannot_change_the_server_are_canonicalized(
    written: str, canonical: str
) -> None:
    assert str(canonical_host(written)) == canonical


@pytest.mark.parametrize(
    "name",
    [
        "08.0.0.5",
        "10.0.0.256",
        "1.2.3.4.5",
        "0x",
        "0x.1",
        "10..5",
        "1_0.0.0.5",
        "4294967296",
        "a.5",
    ],
)
def test_names_inet_aton_refuses_stay_names(name: str) -> None:
    assert inet_aton(name) is None
    assert canonical_host(name).name == name


def test_inet_aton_fills_the_remaining_bytes_with_the_last_part() -> None:
    assert inet_aton("10.65535") == ipaddress.IPv4Address("10.0.255.255")
    assert inet_aton("10.16777216") is None
    assert inet_aton("10.1.65535") == ipaddress.IPv4Address("10.1.255.255")
    assert inet_aton("10.1.65536") is None
    assert inet_aton("4294967295") == ipaddress.IPv4Address("255.255.255.255")
    assert inet_aton("0") == ipaddress.IPv4Address("0.0.0.0")


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**33).map(str),
            st.integers(0, 2**33).map(lambda n: f"0x{n:x}"),
            st.integers(0, 2**33).map(lambda n: f"0{n:o}"),
            st.text(alphabet="0123456789abxX", min_size=0, max_size=6),
        ),
        min_size=1,
        max_size=5,
    ).map(".".join)
)
def test_inet_aton_reads_a_name_exactly_as_the_c_library_does(name: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        expected = None
    assert inet_aton(name) == expected


def test_a_bracketed_string_that_is_no_address_is_kept_as_written() -> None:
    assert canonical_host("[FD00::5::1]") == Host("[fd00::5::1]")


def test_a_port_that_is_not_a_number_is_an_error() -> None:
    with pytest.raises(HostError, match="not a number"):
        canonical_host("harbor:x")
    with pytest.raises(HostError, match="closing bracket"):
        canonical_host("[::1:5000")


@pytest.mark.parametrize(
    "hub",
    [
        "docker.io",
        "DOCKER.IO",
        "index.docker.io",
        "index.docker.io:443",
        "registry-1.docker.io",
        "Registry-1.Docker.io:0443",
        "registry.docker.io",
        "registry.hub.docker.com",
        "docker.io:5000",
    ],
)
def test_every_name_docker_hub_answers_as_is_one_identity_on_any_port(hub: str) -> None:
    assert host_identity(hub) == Host("docker.io")


@pytest.mark.parametrize(
    "local",
    [
        "localhost:5000",
        "LOCALHOST:5000",
        "registry.localhost:5000",
        "127.0.0.1:5000",
        "127.1:5000",
        "127.0.0.2:5000",
        "[::1]:5000",
        "[::ffff:7f00:1]:5000",
        "0.0.0.0:5000",
        "[::]:5000",
        "0:5000",
    ],
)
def test_every_name_and_address_of_the_node_itself_is_localhost(local: str) -> None:
    assert host_identity(local) == Host("localhost", 5000)


def test_other_hosts_keep_their_identity() -> None:
    assert host_identity("harbor.example.com") == Host("harbor.example.com")
    assert host_identity("harbor.example.com:443") == Host("harbor.example.com", 443)
    assert host_identity("docker.io.example.com") == Host("docker.io.example.com")
    assert host_identity("notlocalhost:5000") == Host("notlocalhost", 5000)
    assert host_identity("[fd00::5]") == Host("[fd00::5]")


def test_the_server_of_a_host_without_a_port_is_on_its_schemes_default_port() -> None:
    assert server_identity(Host("h"), "https") == Host("h", 443)
    assert server_identity(Host("h"), "http") == Host("h", 80)
    assert server_identity(Host("h", 5000), "https") == Host("h", 5000)
    assert server_identity(Host("registry-1.docker.io"), "https") == Host("docker.io")


@pytest.mark.parametrize(
    ("host", "scheme", "alias"),
    [
        ("harbor.example.com", "https", "harbor.example.com:443"),
        ("harbor.example.com:443", "https", "harbor.example.com"),
        ("registry.local", "http", "registry.local:80"),
        ("[fd00::5]:443", "https", "[fd00::5]"),
        ("[fd00::5]", "https", "[fd00::5]:443"),
    ],
)
def test_a_host_on_its_schemes_default_port_has_the_other_spelling_as_alias(
    host: str, scheme: str, alias: str
) -> None:
    assert str(default_port_alias(canonical_host(host), scheme)) == alias


def test_a_host_on_another_port_has_no_alias() -> None:
    assert default_port_alias(Host("harbor.example.com", 8443), "https") is None
    assert default_port_alias(Host("registry.local", 443), "http") is None


KEYS = ("harbor.example.com", "harbor.example.com:443", "[fd00::5]", "[fd00::5]:443")


@pytest.mark.parametrize(
    "domain", ["harbor.example.com", "harbor.example.com:443", "[fd00::5]:443"]
)
def test_the_kubelet_uses_a_key_written_exactly_as_the_image_host(domain: str) -> None:
    assert kubelet_uses_key(KEYS, domain)


@pytest.mark.parametrize(
    "domain",
    [
        "Harbor.Example.com",  # case: filepath.Match is case-sensitive
        "harbor.example.com:0443",  # ports compared as strings
        "[fd00::5]",  # a bare bracketed key is a glob character class
        "[fd00:0::5]:443",
        "harbor.example.com:5000",
        "",
    ],
)
def test_the_kubelet_uses_no_key_for_any_other_spelling(domain: str) -> None:
    assert not kubelet_uses_key(KEYS, domain)


def test_the_kubelet_falls_back_to_a_legacy_docker_hub_key_for_docker_hub_names() -> None:
    assert kubelet_uses_key(["index.docker.io"], "docker.io")
    assert kubelet_uses_key(["index.docker.io"], "localhost")  # no "." nor ":": Docker Hub's
    assert not kubelet_uses_key(["index.docker.io"], "registry-1.docker.io")
    assert not kubelet_uses_key(["index.docker.io:443"], "docker.io")
