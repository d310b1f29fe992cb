"""How spacegate finds a Kubernetes API, and its own namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.kubernetes import FakeKubernetes
from webhook.clients.errors import SourceError
from webhook.clients.kube import kube_configured, load_api_client, own_namespace


def test_kubernetes_is_detected_in_a_cluster_or_from_a_kubeconfig(tmp_path: Path) -> None:
    assert kube_configured({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, home=tmp_path)
    assert not kube_configured({}, home=tmp_path)
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\n")
    assert kube_configured({"KUBECONFIG": f"/nonexistent:{kubeconfig}"}, home=tmp_path)
    assert not kube_configured({"KUBECONFIG": "/nonexistent"}, home=tmp_path)
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert kube_configured({}, home=tmp_path)


def test_an_explicit_kubeconfig_is_used_and_reaches_its_cluster(tmp_path: Path) -> None:
    with FakeKubernetes() as fake:
        fake.create_namespace("team-a")
        path = fake.write_kubeconfig(tmp_path / "kubeconfig")
        api = load_api_client(str(path), context="fake")
        try:
            status = api.call_api("GET", f"{fake.url}/api/v1/namespaces/team-a").status
        finally:
            api.close()  # type: ignore[no-untyped-call]
    assert status == 200


def test_an_unusable_kubeconfig_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    with pytest.raises(SourceError, match=f"unusable kubeconfig {path}"):
        load_api_client(str(path))


def test_spacegates_namespace_is_the_configured_one_then_the_pods_then_the_default(
    tmp_path: Path,
) -> None:
    account = tmp_path / "namespace"
    account.write_text("from-account\n")
    pod = {"POD_NAMESPACE": "from-pod"}
    assert own_namespace("configured", pod, account) == "configured"
    assert own_namespace(None, pod, account) == "from-pod"
    assert own_namespace(None, {}, account) == "from-account"
    assert own_namespace(None, {}, tmp_path / "absent") == "spacegate-system"
