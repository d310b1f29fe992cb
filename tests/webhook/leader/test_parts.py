"""The leader's objects, built once, and the leader's work running beside live mode.

``build_parts`` is the one factory ``serve`` and ``spacegate provision`` share; ``leader_work``
runs it over a snapshot feed. The last tests run the whole chain on fakes — a registry
listed every 50 ms, namespaces from the Kubernetes fake, the real loop, provisioner and audit
child — and count passes: routine listings and namespaces coming and going start none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.config import Registry, load_config
from policy.snapshot import NamespaceInfo, Snapshot
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME
from webhook.leader.lease import LostLeadership
from webhook.leader.parts import build_parts, leader_work, wants_leader
from webhook.live.mode import open_live_state
from webhook.live.sources import SpaceSource

SECRETS = "/api/v1/secrets"
LEASES = "/apis/coordination.k8s.io/v1/leases"
WS = "workspace.ghippo.io/id"


def config_text(tmp: Path, extra: str = "") -> str:
    """A workspace-integrated Docker Registry of workspace 101 that needs credentials:
    namespaces of 101 get a pull Secret, others nothing."""
    (tmp / "user").write_text("puller\n")
    (tmp / "password").write_text("Pull-Passw0rd\n")
    return f"""
registries:
  - name: dr
    type: docker-registry
    url: https://dr.example.com
    workspace: "101"
    anonymousPull: false
    refreshInterval: 50ms
    pullCredentials: {{usernameFile: {tmp / "user"}, passwordFile: {tmp / "password"}}}
pullSecrets: {{provision: true, credentialsNamespace: {HOME}}}
policy: {{namespaceGuard: {{enabled: true}}}}
{extra}"""


def pull_login(kube: FakeKubernetes, namespace: str) -> str | None:
    """The username of the registry's entry in the namespace's pull Secret."""
    login = kube.pull_secret_login(namespace, "registry-secret", "dr.example.com")
    return None if login is None else login[0]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_the_parts_live_in_spacegates_namespace_and_only_the_leader_writes(
    kube: FakeKubernetes, api: client.ApiClient, tmp_path: Path
) -> None:
    kube.create_namespace("a-dev")
    config = load_config(config_text(tmp_path))
    parts = build_parts(config, api)
    assert parts.home == HOME == parts.elector.namespace == parts.store.home
    snapshot = Snapshot.build(config, namespaces={"a-dev": NamespaceInfo("101")})

    with pytest.raises(LostLeadership):
        asyncio.run(parts.provisioner.run_pass(snapshot))  # not the leader: no write
    assert pull_login(kube, "a-dev") is None

    assert parts.elector.try_acquire_or_renew()
    result = asyncio.run(parts.provisioner.run_pass(snapshot))
    assert not result.failures and pull_login(kube, "a-dev") == "puller"


def test_provisioning_the_audit_or_a_harbor_listed_live_make_leader_work(tmp_path: Path) -> None:
    assert wants_leader(load_config(config_text(tmp_path)))
    audit_only = "registries: []\naudit: {enabled: true}\n"
    assert wants_leader(load_config(audit_only))
    assert not wants_leader(load_config("registries: []\n"))
    listed = "registries: [{name: h, type: harbor, url: 'https://h.example.com'}]\n"
    assert wants_leader(load_config(listed))  # its last-known-good copy
    assert not wants_leader(load_config(listed + "lastKnownGood: {persist: false}\n"))
    static = (
        "registries: [{name: h, type: harbor, url: 'https://h.example.com', "
        "spaces: [{name: a, public: true}]}]\n"
    )
    assert not wants_leader(load_config(static))


# --------------------------------------------------------------------------- beside live mode


class Catalog:
    """A Docker Registry's catalog that answers the same every time it is listed."""

    def __init__(self, registry: Registry) -> None:
        self.name = registry.name

    async def fetch(self) -> dict[str, bool]:
        return {"apps": True}

    async def aclose(self) -> None:
        pass


def sources(registry: Registry) -> SpaceSource:
    return Catalog(registry)


@pytest.mark.usefixtures("kubeconfig")
def test_routine_listings_and_namespaces_coming_and_going_start_no_pass(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    """Issue 15, finding 13: every listing and namespace event made a new snapshot version,
    and every version a full provisioning pass and a full audit. Now a pass starts only on
    a change its job reads, promptly, and otherwise on its interval."""
    kube.create_namespace("a-dev", {WS: "101"})
    config = load_config(
        config_text(tmp_path, "audit: {enabled: true, reports: none, interval: 1h}\n")
    )

    def passes(registry: CollectorRegistry) -> tuple[float, float]:
        provisioning = registry.get_sample_value(
            "spacegate_pull_secret_reconcile_duration_seconds_count"
        )
        audits = registry.get_sample_value("spacegate_audit_duration_seconds_count")
        return provisioning or 0.0, audits or 0.0

    async def scenario() -> None:
        async with open_live_state(
            config, kube=True, api_client=kube.api_client, source_factory=sources
        ) as state:
            registry = state.metrics_registry
            assert registry is not None
            async with leader_work(
                config, state, api_client=kube.api_client, registry=registry, settle=0.05
            ):
                await until(lambda: passes(registry) == (1, 1), timeout=30)
                assert pull_login(kube, "a-dev") == "puller"

                # One second of routine: the catalog listed every 50 ms, a namespace of no
                # workspace created and deleted. Many snapshot versions, nothing to do.
                version = state.snapshot.version
                kube.create_namespace("scratch")
                await asyncio.sleep(0.5)
                kube.delete_namespace("scratch")
                await asyncio.sleep(0.5)
                assert state.snapshot.version >= version + 10
                assert passes(registry) == (1, 1)

                # A namespace joining workspace 101 needs the Secret: one provisioning pass,
                # promptly. The audit has nothing new to judge (its workloads are admitted).
                changed = time.monotonic()
                kube.create_namespace("a-prod", {WS: "101"})
                await until(lambda: pull_login(kube, "a-prod") == "puller", timeout=5)
                assert time.monotonic() - changed < 2
                await asyncio.sleep(0.3)
                assert passes(registry) == (2, 1)

                # a-dev moved to warn mode: what the audit reports changes; provisioning not.
                kube.label_namespace("a-dev", {"spacegate.io/mode": "warn"})
                await until(lambda: passes(registry)[1] == 2, timeout=30)
                assert passes(registry)[0] == 2
                assert registry.get_sample_value("spacegate_leader") == 1
        lease = kube.get_object(LEASES, HOME, "spacegate-provisioner")
        assert lease is not None and lease["spec"].get("holderIdentity") is None  # released

    asyncio.run(scenario())
