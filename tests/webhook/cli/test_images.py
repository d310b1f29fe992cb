"""``spacegate images``: spaces offline, and repositories and tags live from the registries."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from webhook.cli.images import run


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[HarborFake, Path]]:
    harbor = HarborFake().start()
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)
    harbor.add_project("team-b", public=False)
    harbor.add_repositories("team-a", ["web", "api"], ("1.0", "2.0"))
    harbor.add_repository("team-b", "payroll", ("9.9",))
    (tmp_path / "u").write_text(ADMIN_USER)
    (tmp_path / "p").write_text(ADMIN_PASSWORD)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
registries:
  - name: harbor
    type: harbor
    url: {harbor.url}
    hosts: [harbor.demo.local]
    credentials: {{usernameFile: {tmp_path / "u"}, passwordFile: {tmp_path / "p"}}}
bindings:
  - {{registry: harbor, space: team-a, workspaces: ["101"]}}
namespaces: {{team-a-dev: "101"}}
"""
    )
    yield harbor, path
    harbor.stop()


def call(config: str | None, namespace: str, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(config, namespace, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_the_embedded_demo_still_lists_spaces_offline_and_says_what_it_cannot() -> None:
    code, out, _ = call(None, "team-b-dev")
    assert code == 0 and "harbor.demo.local/team-b/..." in out
    code, _, err = call(None, "team-b-dev", repositories=True)
    assert code == 2 and "--config FILE" in err


def test_live_spaces_then_repositories_of_the_usable_spaces(
    config: tuple[HarborFake, Path],
) -> None:
    _, path = config
    code, out, _ = call(str(path), "team-a-dev")
    assert code == 0 and "team-a" in out and "team-b" not in out
    code, out, _ = call(str(path), "team-a-dev", repositories=True)
    assert code == 0
    assert out.splitlines()[0] == "namespace team-a-dev may deploy from 2 repositories:"
    assert "harbor.demo.local/team-a/web" in out and "payroll" not in out
    code, out, _ = call(str(path), "team-a-dev", repositories=True, output="json")
    assert [r["name"] for r in json.loads(out)["items"]] == ["team-a/api", "team-a/web"]


def test_tags_with_digests_and_the_pull_secret(config: tuple[HarborFake, Path]) -> None:
    harbor, path = config
    code, out, _ = call(str(path), "team-a-dev", tags="harbor.demo.local/team-a/web")
    assert code == 0
    assert (
        out.splitlines()[0]
        == "harbor.demo.local/team-a/web in namespace team-a-dev (pull secret registry-secret):"
    )
    assert harbor.digest_of("team-a/web", "2.0") in out
    code, out, _ = call(str(path), "team-a-dev", tags="harbor.demo.local/team-a/web", output="json")
    assert json.loads(out)["items"][0]["reference"] == "harbor.demo.local/team-a/web:2.0"


def test_another_workspaces_repository_is_not_found_and_harbor_is_not_asked(
    config: tuple[HarborFake, Path],
) -> None:
    harbor, path = config
    before = sum("team-b" in r.path for r in harbor.requests)
    code, _, err = call(str(path), "team-a-dev", tags="harbor.demo.local/team-b/payroll")
    assert code == 1 and 'repository "team-b/payroll" of registry "harbor" not found' in err
    assert sum("team-b" in r.path for r in harbor.requests) == before
