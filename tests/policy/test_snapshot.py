"""The snapshot: built from config or live data, looked up by image domain."""

from __future__ import annotations

from policy.config import load_config
from policy.snapshot import NamespaceInfo, Snapshot

CONFIG = load_config(
    """
registries:
  - {name: harbor, type: harbor, url: https://harbor.example.com, hosts: [harbor.example.com, 10.0.0.5:443]}
  - {name: static, type: harbor, url: https://static.example.com, spaces: [{name: lib, public: true}]}
bindings:
  - {registry: harbor, space: team-a, workspaces: ["1"]}
  - {registry: harbor, space: team-a, workspaces: ["2"]}
namespaces: {ns1: "1"}
"""
)


def test_a_live_registry_is_unsynced_until_its_spaces_arrive() -> None:
    snap = Snapshot.from_config(CONFIG)
    assert not snap.registries["harbor"].synced
    assert snap.registries["static"].synced
    assert not snap.synced
    live = Snapshot.build(CONFIG, spaces={"harbor": {"team-a": False}}, version=2)
    assert live.synced
    assert live.version == 2
    assert live.registries["harbor"].space_public("team-a") is False
    assert live.registries["harbor"].space_public("nope") is None


def test_registries_are_found_by_any_of_their_hosts_case_insensitively() -> None:
    snap = Snapshot.from_config(CONFIG)
    for domain in ("harbor.example.com", "Harbor.Example.COM", "10.0.0.5:443"):
        state = snap.registry_for_domain(domain)
        assert state is not None and state.name == "harbor", domain
    # 10.0.0.5:443 on an https registry is the bare 10.0.0.5 too; another port is not
    assert snap.registry_for_domain("10.0.0.5") is snap.registry_for_domain("10.0.0.5:443")
    assert snap.registry_for_domain("10.0.0.5:8443") is None


def test_bindings_of_one_space_accumulate() -> None:
    snap = Snapshot.from_config(CONFIG)
    assert snap.bound_workspaces("harbor", "team-a") == {"1", "2"}
    assert snap.bound_workspaces("harbor", "other") == frozenset()


def test_live_namespaces_replace_the_static_map() -> None:
    assert Snapshot.from_config(CONFIG).namespace("ns1").workspace == "1"
    live = Snapshot.build(CONFIG, namespaces={"ns2": NamespaceInfo("9", "warn")})
    assert live.namespace("ns1").workspace is None
    assert live.namespace("ns2") == NamespaceInfo("9", "warn")


def test_the_snapshot_cannot_be_changed_by_its_readers() -> None:
    snap = Snapshot.from_config(CONFIG)
    try:
        snap.registries["x"] = snap.registries["harbor"]  # type: ignore[index]
    except TypeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("registries mapping is writable")
    assert "x" not in snap.registries
