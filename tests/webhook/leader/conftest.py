"""The leader's tests run against the HTTP-level Kubernetes fake (``tests/fakes/kubernetes.py``):
the real ``kubernetes`` client speaks to it, so Leases, Secrets, workloads and reports go
over the wire as they would to an apiserver. Each test gets its own fake, with spacegate's
home namespace created.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.fakes.kubernetes import FakeKubernetes

HOME = "spacegate-system"


class Clock:
    """Wall-clock seconds a test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.create_namespace(HOME)
        yield fake


@pytest.fixture
def kubeconfig(kube: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``KUBECONFIG`` names the fake: what the audit's child process (which makes its own
    client, as in a pod) connects to."""
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def api(kube: FakeKubernetes) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]
