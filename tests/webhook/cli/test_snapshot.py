"""``spacegate snapshot``: one sync from live sources, written as an offline config."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policy.config import Registry, load_config
from policy.snapshot import Snapshot
from tests.fakes.harbor import ADMIN_PASSWORD, HarborFake
from tests.fakes.kubernetes import FakeKubernetes
from tests.support.bindings import BINDINGS, binding
from tests.webhook.cli.conftest import admin_credentials
from webhook.cli.main import main as cli_main
from webhook.cli.snapshot import run
from webhook.live.sources import SpaceSource
from webhook.live.sources.factory import make_source

WS = "workspace.ghippo.io/id"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def quick_sources(registry: Registry) -> SpaceSource:
    return make_source(registry, retries=0, timeout=2.0)


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes()
    fake.create_namespace("team-a-dev", {WS: "101"})
    fake.create_namespace("team-b-dev", {WS: "102", "spacegate.io/mode": "warn"})
    fake.create_namespace("sandbox")
    yield fake
    fake.stop()


def live_config(tmp_path: Path, harbor_url: str) -> Path:
    credentials = admin_credentials(tmp_path)
    path = tmp_path / "live.yaml"
    path.write_text(
        f"""
policy: {{mode: enforce, maxStaleness: 5m}}
registries:
  - name: harbor
    type: harbor
    url: {harbor_url}
    hosts: [harbor.example.com]
    credentials: {credentials}
    refreshInterval: 45s
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
"""
    )
    return path


def pod_manifest(tmp_path: Path, namespace: str, image: str) -> Path:
    path = tmp_path / f"pod-{namespace}.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
        )
    )
    return path


def test_the_snapshot_is_an_offline_config_that_check_uses_without_credentials(
    harbor: HarborFake, kube: FakeKubernetes, tmp_path: Path
) -> None:
    config_path = live_config(tmp_path, harbor.url)
    out = tmp_path / "offline.yaml"
    err = io.StringIO()

    code = run(
        str(config_path),
        str(out),
        kube=True,
        source_factory=quick_sources,
        api_client=kube.api_client,
        stderr=err,
        now=lambda: NOW,
    )

    assert code == 0, err.getvalue()
    assert "wrote" in err.getvalue()
    text = out.read_text()
    assert "credentials" not in text
    assert str(tmp_path / "password") not in text
    assert "2026-01-02T03:04:05Z" in text
    assert "team-b-dev: warn" in text  # the mode label that cannot be kept is named
    offline = load_config(text, str(out))
    snapshot = Snapshot.from_config(offline)
    assert snapshot.synced
    assert dict(snapshot.registries["harbor"].spaces) == {
        "library": True,
        "team-a": False,
        "team-b": False,
    }
    assert dict(offline.namespaces) == {"team-a-dev": "101", "team-b-dev": "102"}
    assert offline.registries[0].refresh_interval == 45
    assert offline.policy.max_staleness == 300

    harbor.stop()  # offline means offline
    allowed = pod_manifest(tmp_path, "team-a-dev", "harbor.example.com/team-a/app:1")
    denied = pod_manifest(tmp_path, "team-b-dev", "harbor.example.com/team-a/app:1")
    assert cli_main(["check", "-f", str(allowed), "--config", str(out)]) == 0
    assert cli_main(["check", "-f", str(denied), "--config", str(out)]) == 1


def test_the_clusters_binding_objects_are_merged_into_the_offline_bindings(
    harbor: HarborFake, kube: FakeKubernetes, tmp_path: Path
) -> None:
    """An offline check must judge as the cluster does: bindings made by objects too."""
    kube.serve_resource("spacegate.io/v1alpha1", "registryspacebindings", "RegistrySpaceBinding")
    kube.create_object(BINDINGS, "", binding("team-a-102", ["102"]))
    out = tmp_path / "offline.yaml"

    code = run(
        str(live_config(tmp_path, harbor.url)),
        str(out),
        kube=True,
        source_factory=quick_sources,
        api_client=kube.api_client,
    )

    assert code == 0
    text = out.read_text()
    assert "the config's and the cluster's 1 RegistrySpaceBinding objects, merged" in text
    offline = load_config(text)
    assert [(b.space, b.workspaces) for b in offline.bindings] == [("team-a", ("101", "102"))]
    allowed = pod_manifest(tmp_path, "team-b-dev", "harbor.example.com/team-a/app:1")
    assert cli_main(["check", "-f", str(allowed), "--config", str(out)]) == 0


def test_without_an_output_file_the_snapshot_goes_to_stdout(
    harbor: HarborFake, tmp_path: Path
) -> None:
    config_path = live_config(tmp_path, harbor.url)
    for output in (None, "-"):
        stdout = io.StringIO()
        code = run(
            str(config_path), output, kube=False, source_factory=quick_sources, stdout=stdout
        )
        assert code == 0
        offline = load_config(stdout.getvalue())
        assert offline.registries[0].spaces is not None
        assert offline.registries[0].credentials is None


def test_a_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("registries:\n  - {name: h, type: nexus, url: 'https://h'}\n")
    err = io.StringIO()
    assert run(str(path), None, kube=False, stderr=err) == 2
    assert "registries[0].type" in err.getvalue()
    assert run(str(tmp_path / "missing.yaml"), None, kube=False, stderr=err) == 2
    assert "no such file" in err.getvalue()


def test_a_failing_registry_exits_1_naming_it_and_writes_nothing(
    harbor: HarborFake, tmp_path: Path
) -> None:
    config_path = live_config(tmp_path, harbor.url)
    out = tmp_path / "offline.yaml"
    harbor.faults.fail_next(10, 500)
    err = io.StringIO()
    assert (
        run(str(config_path), str(out), kube=False, source_factory=quick_sources, stderr=err) == 1
    )
    assert "registry 'harbor' failed" in err.getvalue()
    assert "500" in err.getvalue()
    assert not out.exists()
    assert ADMIN_PASSWORD not in err.getvalue()


def test_a_failing_namespace_list_exits_1_naming_it(harbor: HarborFake, tmp_path: Path) -> None:
    config_path = live_config(tmp_path, harbor.url)
    kube = FakeKubernetes(start=False)  # nothing listening
    err = io.StringIO()
    code = run(
        str(config_path),
        str(tmp_path / "offline.yaml"),
        kube=True,
        source_factory=quick_sources,
        api_client=kube.api_client,
        fetch_timeout=2.0,
        stderr=err,
    )
    assert code == 1
    assert "namespaces failed" in err.getvalue()


def test_static_registries_and_the_static_namespace_map_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "static.yaml"
    path.write_text(
        """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}]
namespaces: {team-a-dev: "101"}
"""
    )

    def no_source(registry: Registry) -> SpaceSource:
        raise AssertionError("static registries are not listed")

    stdout = io.StringIO()
    assert run(str(path), "-", kube=False, source_factory=no_source, stdout=stdout) == 0
    offline = load_config(stdout.getvalue())
    assert dict(offline.namespaces) == {"team-a-dev": "101"}
    assert offline.registries[0].spaces is not None
    assert [s.name for s in offline.registries[0].spaces] == ["library"]


def test_the_cli_runs_the_snapshot_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config: no namespace listing
    path = tmp_path / "static.yaml"
    path.write_text(
        "registries: [{name: h, type: harbor, url: 'https://h.example.com', spaces: []}]\n"
    )
    out = tmp_path / "out.yaml"
    assert cli_main(["snapshot", "--config", str(path), "-o", str(out)]) == 0
    assert load_config(out.read_text()).registries[0].spaces == ()
