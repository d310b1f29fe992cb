"""What ``audit`` and ``provision`` share: reaching the cluster, and the snapshot live mode
would serve now (registries synced once, workspaces from the namespace labels)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from policy.config import load_config
from policy.snapshot import NamespaceInfo
from tests.fakes.harbor import HarborFake
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.cli.conftest import admin_credentials, write_kubeconfig
from webhook.cli.cluster import connect, live_snapshot
from webhook.clients.errors import SourceError

PROG = "spacegate audit"


def live_config(tmp_path: Path, harbor_url: str) -> str:
    return f"""
registries:
  - name: harbor
    type: harbor
    url: {harbor_url}
    hosts: [harbor.example.com]
    credentials: {admin_credentials(tmp_path)}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
"""


# --------------------------------------------------------------------------- connect


def test_an_explicit_kubeconfig_is_used_and_nothing_is_said(
    cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    err = io.StringIO()

    api = connect(PROG, str(kubeconfig), None, err)

    assert api is not None
    try:
        assert api.configuration.host == cluster.url
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert err.getvalue() == ""


def test_a_missing_kubeconfig_file_is_named_and_no_client_is_made(tmp_path: Path) -> None:
    err = io.StringIO()
    missing = tmp_path / "nowhere" / "kubeconfig"

    assert connect(PROG, str(missing), None, err) is None
    assert err.getvalue().startswith(f"spacegate audit: unusable kubeconfig {missing}: ")


def test_an_unknown_context_is_named(cluster: FakeKubernetes, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url, context="dev")
    err = io.StringIO()

    assert connect(PROG, str(kubeconfig), "prod", err) is None
    assert "spacegate audit: unusable kubeconfig" in err.getvalue()
    assert "prod" in err.getvalue()


def test_with_no_cluster_and_no_kubeconfig_both_reasons_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    err = io.StringIO()

    assert connect(PROG, None, None, err) is None
    message = err.getvalue()
    assert message.startswith("spacegate audit: no Kubernetes API configuration: ")
    assert "not running in a cluster" in message
    assert "no usable kubeconfig" in message


# --------------------------------------------------------------------------- live_snapshot


def test_the_live_snapshot_has_the_listed_spaces_and_the_labelled_workspaces(
    cluster: FakeKubernetes, harbor: HarborFake, tmp_path: Path
) -> None:
    config = load_config(live_config(tmp_path, harbor.url))
    api = cluster.api_client()
    try:
        snapshot, labels = asyncio.run(live_snapshot(config, api))
    finally:
        api.close()  # type: ignore[no-untyped-call]

    assert dict(snapshot.registries["harbor"].spaces) == {
        "library": True,
        "team-a": False,
        "team-b": False,
    }
    assert labels == {
        "team-a-dev": NamespaceInfo("101"),
        "team-b-dev": NamespaceInfo("102"),
        "sandbox": NamespaceInfo(None),
    }
    assert snapshot.namespaces == labels


def test_a_given_namespace_map_is_used_without_listing_namespaces_again(
    cluster: FakeKubernetes, harbor: HarborFake, tmp_path: Path
) -> None:
    config = load_config(live_config(tmp_path, harbor.url))
    given = {"elsewhere": NamespaceInfo("101")}
    api = cluster.api_client()
    try:
        snapshot, labels = asyncio.run(live_snapshot(config, api, given))
    finally:
        api.close()  # type: ignore[no-untyped-call]

    assert labels == given
    assert snapshot.namespaces == given
    assert not [r for r in cluster.requests if r.is_namespace_list]


def test_every_source_that_failed_is_named_in_one_error(
    cluster: FakeKubernetes, harbor: HarborFake, tmp_path: Path
) -> None:
    config = load_config(live_config(tmp_path, harbor.url))
    harbor.faults.fail_next(20, status=403)
    cluster.fail_next(5, status=403, path_prefix="/api/v1/namespaces")
    api = cluster.api_client()
    try:
        with pytest.raises(SourceError) as failed:
            asyncio.run(live_snapshot(config, api))
    finally:
        api.close()  # type: ignore[no-untyped-call]

    assert str(failed.value) == (
        "could not sync: registry 'harbor': harbor 'harbor': 403 UNKNOWN: error; "
        "namespaces: listing namespaces failed: HTTP 403 Forbidden: injected failure (403)"
    )
