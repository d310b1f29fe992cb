"""Registry hosts: how an image domain is written, compared and aliased.

An image's domain (``harbor.example.com``, ``10.0.0.5:5000``, ``[fd00::5]:5000``) picks the
registry whose rules apply. The config's ``hosts`` are checked, normalized and given their
default-port aliases here; the snapshot looks image domains up in the same normalized form;
provisioning writes those same hosts as the pull Secret's ``auths`` keys.
"""

from __future__ import annotations

import re

HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?",
    re.ASCII,
)


def normalize_host(host: str) -> str:
    """The form hosts are compared in: host part lowercased, port kept exactly."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1].lower() + host[end + 1 :]
    name, sep, port = host.partition(":")
    return name.lower() + sep + port


_DEFAULT_PORTS = {"https": "443", "http": "80"}


def default_port_alias(host: str, scheme: str) -> str:
    """The other spelling of ``host`` on the registry URL's default port.

    ``harbor.example.com`` and ``harbor.example.com:443`` name the same server (for an
    ``https`` registry; ``:80`` for ``http``), and a container runtime pulls from either;
    but the kubelet and this policy compare ports exactly. Each host therefore implies its
    alias: the bare host its default-port form, and the default-port form the bare host.
    Otherwise a tenant could write the port to step around the registry's rules.
    """
    default_port = _DEFAULT_PORTS[scheme]
    bracket = host.rfind("]")
    name, sep, port = host[bracket + 1 :].rpartition(":")
    if not sep:
        return f"{host}:{default_port}"
    if port == default_port:
        return host[: bracket + 1] + name
    return host
