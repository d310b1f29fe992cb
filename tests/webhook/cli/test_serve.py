"""``serve``'s live state: live mode, and the leader's work joined to it when the config asks.

Against the Kubernetes fake (namespaces, Secrets, the Lease) with a watched config file, as
``spacegate serve --config FILE`` runs in a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy.config import load_config
from tests.fakes.kubernetes import FakeKubernetes
from webhook.cli.serve import ConfigStateOpener, live_state_factory

HOME = "spacegate-system"
WS = "workspace.ghippo.io/id"
LEASES = "/apis/coordination.k8s.io/v1/leases"


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.create_namespace(HOME)
        fake.create_namespace("a-dev", {WS: "101"})
        yield fake


def config_text(tmp: Path, *, name: str = "registry-secret", provision: bool = True) -> str:
    """A Docker Registry of workspace 101 that needs credentials (its spaces static)."""
    (tmp / "user").write_text("puller\n")
    (tmp / "password").write_text("Pull-Passw0rd\n")
    return f"""
registries:
  - name: dr
    type: docker-registry
    url: https://dr.example.com
    workspace: "101"
    anonymousPull: false
    spaces: [{{name: apps, public: true}}]
    pullCredentials: {{usernameFile: {tmp / "user"}, passwordFile: {tmp / "password"}}}
policy: {{pullSecretName: {name}, namespaceGuard: {{enabled: true}}}}
pullSecrets: {{provision: {str(provision).lower()}, credentialsNamespace: {HOME}}}
"""


def login(kube: FakeKubernetes, namespace: str, name: str) -> str | None:
    """The username of the registry's entry in the namespace's Secret ``name``."""
    found = kube.pull_secret_login(namespace, name, "dr.example.com")
    return None if found is None else found[0]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_the_live_factory_fits_serve() -> None:
    factory: ConfigStateOpener = live_state_factory(None, kube=False)
    opened: Any = factory(load_config("registries: []\n"))

    async def scenario() -> None:
        async with opened as state:
            assert state.readiness()[0]

    asyncio.run(scenario())


def test_a_reloaded_pull_secret_name_is_injected_and_provisioned_without_a_restart(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    """One lifetime for ``pullSecretName``: after a reload, the name ``/mutate`` injects is
    the name the leader writes, from the next pass on."""
    path = tmp_path / "spacegate.yaml"
    path.write_text(config_text(tmp_path))
    factory = live_state_factory(
        str(path), kube=True, api_client=kube.api_client, poll_interval=0.02, settle=0.05
    )

    async def scenario() -> None:
        async with factory(load_config(path.read_text(), str(path))) as state:
            await until(lambda: login(kube, "a-dev", "registry-secret") == "puller")
            path.write_text(config_text(tmp_path, name="pull-b"))
            await until(lambda: state.snapshot.policy.pull_secret_name == "pull-b")
            await until(lambda: login(kube, "a-dev", "pull-b") == "puller", timeout=5)

    asyncio.run(scenario())


def test_without_a_kubernetes_api_the_leaders_work_does_not_run_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    factory = live_state_factory(None, kube=False)

    async def scenario() -> None:
        async with factory(load_config(config_text(tmp_path))) as state:
            assert state.readiness()[0]

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "pullSecrets.provision or audit.enabled is on but there is no Kubernetes" in caplog.text


def test_without_provisioning_the_audit_or_binding_objects_no_lease_is_taken(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    factory = live_state_factory(None, kube=True, api_client=kube.api_client, settle=0.05)
    text = config_text(tmp_path, provision=False) + "bindings: {source: config}\n"

    async def scenario() -> None:
        async with factory(load_config(text)) as state:
            await until(lambda: state.readiness()[0])
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert kube.objects(LEASES) == []
    assert login(kube, "a-dev", "registry-secret") is None


# ------------------------------------------------------------------ the image selector's listener


def test_the_selector_runs_by_default_only_in_live_mode_with_a_kubernetes_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook.admission.server import TLSFiles
    from webhook.cli.access_wiring import MetricsAuthError
    from webhook.cli.serve import selector_settings

    files = TLSFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "files": files,
        "cert": None,
        "key": None,
        "audiences": (),
    }
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert selector_settings(None, live=True, **options) is None  # make run, or no cluster
    with pytest.raises(MetricsAuthError, match="needs a Kubernetes API"):
        selector_settings(8444, live=False, **options)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    chosen = selector_settings(None, live=True, **options)
    assert chosen is not None and (chosen.port, chosen.cert) == (8444, files.cert)
    assert selector_settings(None, live=False, **options) is None
    assert selector_settings(0, live=True, **options) is None
    own = selector_settings(
        9444, live=True, **{**options, "cert": "s.crt", "key": "s.key", "audiences": ("sg",)}
    )
    assert own is not None and (own.port, str(own.cert), own.audiences) == (9444, "s.crt", ("sg",))


def test_binding_objects_are_read_by_default_and_their_statuses_need_a_leader(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    """With ``bindings.source`` unset the objects are read (here their CRD is not served:
    an answer, not a failure), so a replica campaigns for the Lease to write statuses."""
    factory = live_state_factory(None, kube=True, api_client=kube.api_client, settle=0.05)

    async def scenario() -> None:
        async with factory(load_config(config_text(tmp_path, provision=False))) as state:
            await until(lambda: state.readiness()[0])
            await until(lambda: kube.objects(LEASES) != [])
            assert state.snapshot.binding_objects is None  # not served: none read

    asyncio.run(scenario())
