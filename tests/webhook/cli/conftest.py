"""What the commands that read a cluster (``audit``, ``provision``) are tested against.

The Kubernetes API is :class:`~tests.fakes.kubernetes.FakeKubernetes` (real HTTP, the real
``kubernetes`` client on our side), reached through a kubeconfig file as a user would pass
``--kubeconfig``; Harbor, where a test needs it, is :class:`~tests.fakes.harbor.HarborFake`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.fakes.kubernetes import FakeKubernetes

WS = "workspace.ghippo.io/id"


def write_kubeconfig(path: Path, server: str, *, context: str = "fake") -> Path:
    """A kubeconfig whose only context, ``context``, points at ``server`` (plain HTTP)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-checked"}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    """Three namespaces: ``team-a-dev`` (workspace 101), ``team-b-dev`` (102), ``sandbox``."""
    with FakeKubernetes() as fake:
        fake.create_namespace("team-a-dev", {WS: "101"})
        fake.create_namespace("team-b-dev", {WS: "102"})
        fake.create_namespace("sandbox")
        yield fake


@pytest.fixture
def kubeconfig(cluster: FakeKubernetes, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", cluster.url)


@pytest.fixture
def harbor() -> Iterator[HarborFake]:
    """Harbor with the public ``library`` and the private ``team-a`` and ``team-b``."""
    with HarborFake() as fake:
        fake.add_project("library", public=True)
        fake.add_project("team-a", public=False)
        fake.add_project("team-b", public=False)
        yield fake


def admin_credentials(directory: Path) -> str:
    """A registry's ``credentials:`` value for the Harbor fake's admin: the username and
    password written to files in ``directory``, as a Secret mounted in the pod would be."""
    (directory / "user").write_text(ADMIN_USER)
    (directory / "password").write_text(ADMIN_PASSWORD)
    return f"{{usernameFile: {directory / 'user'}, passwordFile: {directory / 'password'}}}"
