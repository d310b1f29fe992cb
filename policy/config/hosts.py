"""Registry hosts in the config: each listed host in its canonical spelling, one owner each.

The parser (``policy.config.parse``) reads the file; this module decides what a listed host
means: its canonical identity (``policy.hosts``), refusing numeric names a node's resolver
would read as another address, and which registry each server belongs to, default-port
aliases included, so that one server is never two registries (README "What counts as the
same registry").
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import NoReturn
from urllib.parse import urlsplit

from policy.config.model import (
    ConfigError,
    Registry,
)
from policy.hosts import (
    HOST_PORT,
    Host,
    HostError,
    canonical_host,
    default_port_alias,
    host_identity,
    inet_aton,
    server_identity,
    split_host,
)
from policy.names import describe

__all__ = ["claim_hosts", "config_host"]


def config_host(text: str, where: str, *, from_url: bool = False) -> Host:
    """A listed host (or the URL's) in its canonical spelling (``policy.hosts``).

    Spellings that cannot change the server are canonicalized silently (case, a trailing
    dot, the port's leading zeros, IPv6 written forms, IPv4-mapped addresses); a numeric
    name a resolver would read as another IPv4 address (``010.0.0.5`` is 8.0.0.5) is
    refused, naming the address: the config should say which server it means.
    """
    if not HOST_PORT.fullmatch(text):
        if from_url:
            raise ConfigError(
                f"{where}: the host {describe(text)} cannot be an image domain; "
                "list the domains images use under hosts"
            )
        raise ConfigError(
            f"{where}: expected an image domain such as "
            f"harbor.example.com or 10.0.0.5:5000, got {describe(text)}"
        )
    try:
        host = canonical_host(text)
    except HostError as exc:  # pragma: no cover - HOST_PORT admits numeric ports only
        raise ConfigError(f"{where}: {exc}") from None
    if host.port is not None and not 0 < host.port < 65536:
        raise ConfigError(f"{where}: port {host.port} of {describe(text)} is not 1-65535")
    name, _ = split_host(text)
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ConfigError(f"{where}: {describe(text)} is not an IPv6 address") from None
        return host
    name = name.lower().removesuffix(".")
    address = inet_aton(name)
    if address is not None and str(address) != name:
        port = "" if host.port is None else f":{host.port}"
        raise ConfigError(
            f"{where}: {describe(text)} is read by a node's resolver as the IPv4 address "
            f"{address}; write {address}{port}"
        )
    return host


def claim_hosts(registries: tuple[Registry, ...]) -> tuple[Registry, ...]:
    """Each registry's hosts plus their default-port aliases, with one owner per identity.

    Two registries whose hosts reach one server (``policy.hosts.server_identity``: the same
    identity and port, the default port implied by each URL's scheme) are a config error
    naming both. A default-port alias (:func:`policy.hosts.default_port_alias`) that
    another registry lists itself stays that registry's (``hosts`` says so); an alias two
    registries would both imply is an error.
    """
    servers: dict[Host, tuple[int, str]] = {}
    explicit: dict[Host, tuple[int, str]] = {}
    for i, registry in enumerate(registries):
        scheme = urlsplit(registry.url).scheme
        for spelling in registry.hosts:
            host = canonical_host(spelling)
            for table, key in (
                (servers, server_identity(host, scheme)),
                (explicit, host_identity(host)),
            ):
                owner = table.setdefault(key, (i, spelling))
                if owner[0] != i:
                    _claimed(registries, i, spelling, owner)
    implied: dict[Host, tuple[int, str]] = {}
    out = []
    for i, registry in enumerate(registries):
        scheme = urlsplit(registry.url).scheme
        aliases = []
        for spelling in registry.hosts:
            alias = default_port_alias(canonical_host(spelling), scheme)
            if alias is None:
                continue
            key = host_identity(alias)
            if explicit.get(key, (i,))[0] != i:
                continue  # another registry lists it: its own
            owner = implied.setdefault(key, (i, str(alias)))
            if owner[0] != i:
                _claimed(registries, i, f"{alias} (implied by {spelling})", owner)
            aliases.append(str(alias))
        hosts = tuple(dict.fromkeys((*registry.hosts, *aliases)))
        out.append(registry if hosts == registry.hosts else replace(registry, hosts=hosts))
    return tuple(out)


def _claimed(
    registries: tuple[Registry, ...], index: int, spelling: str, owner: tuple[int, str]
) -> NoReturn:
    other_index, other_spelling = owner
    other = registries[other_index].name
    same = "" if other_spelling == spelling else f" as {other_spelling!r}, the same server"
    raise ConfigError(
        f"registries[{index}].hosts: host {spelling!r} is already claimed by registry "
        f"{other!r} (registries[{other_index}]){same}; one server cannot be both "
        f"{other!r} and {registries[index].name!r}"
    )
