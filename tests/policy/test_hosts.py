"""Registry hosts: which spellings are hosts, how they compare, and their default-port alias."""

from __future__ import annotations

import pytest

from policy.hosts import HOST_PORT, default_port_alias, normalize_host


@pytest.mark.parametrize(
    "host", ["harbor.example.com", "harbor", "10.0.0.5:5000", "[fd00::5]:5000", "[::1]", "a-b.c"]
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
    ],
)
def test_urls_paths_credentials_and_malformed_names_are_not(host: str) -> None:
    assert not HOST_PORT.fullmatch(host)


def test_hosts_compare_with_the_name_lowercased_and_the_port_kept() -> None:
    assert normalize_host("Harbor.Example.COM:5000") == "harbor.example.com:5000"
    assert normalize_host("[FD00::5]:5000") == "[fd00::5]:5000"


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
    assert default_port_alias(host, scheme) == alias


def test_a_host_on_another_port_is_its_own_alias() -> None:
    assert default_port_alias("harbor.example.com:8443", "https") == "harbor.example.com:8443"
    assert default_port_alias("registry.local:443", "http") == "registry.local:443"
