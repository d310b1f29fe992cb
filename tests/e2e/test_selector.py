"""The image selector's API on the real control plane, with real ServiceAccount tokens.

``spacegate serve`` runs its selector listener in live mode; Harbor is the HTTP-level fake
(listed live), the platform registry the real ``docker-registry`` with pushed repositories.
A namespace's developer (bound to the built-in ``view`` role, which the chart's aggregated
role extends with ``list images.spacegate.io``) sees what that namespace may deploy, down to
tags and digests; another workspace's developer never sees team-a's private repositories (not
in any answer, and Harbor is never asked for them); no token is 401, no grant 403; bad input
is a clear 4xx with no registry call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.access import service_account, token
from tests.support.controlplane.plane import ControlPlane
from tests.support.selector_world import HARBOR_HOST, TEAM_B_SECRET, SelectorWorld, selector_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SelectorWorld]:
    with selector_world(control_plane, tmp_path_factory.mktemp("selector")) as built:
        yield built


def get(world: SelectorWorld, who: str | None, path: str, **params: Any) -> httpx.Response:
    headers = {} if who is None else {"Authorization": f"Bearer {world.tokens.get(who, who)}"}
    with world.spacegate.selector_client() as http:
        return http.get(path, headers=headers, params=params)


def harbor_asked_about(world: SelectorWorld, project: str = "") -> list[str]:
    """Harbor requests about repositories (of ``project``): the selector's calls, not the
    live refresher's periodic ``/projects`` listing."""
    prefix = f"/api/v2.0/projects/{project}/" if project else "/api/v2.0/projects/"
    return [r.path for r in world.harbor.requests if r.path.startswith(prefix)]


def test_a_developer_sees_the_spaces_of_their_namespace_with_why(world: SelectorWorld) -> None:
    answer = get(world, "dev-a", f"/api/v1/namespaces/{world.namespace_a}/spaces")
    assert answer.status_code == 200, answer.text
    spaces = {(s["registry"], s["space"]): s for s in answer.json()["items"]}
    assert spaces[("harbor", "team-a")]["why"] == "bound to workspace 101"
    assert spaces[("harbor", "team-a")]["needsPullSecret"] is True
    assert spaces[("harbor", "library")]["visibility"] == "public"
    assert spaces[("platform", "tools")]["why"] == "platform Docker Registry: all public"
    assert ("harbor", "team-b") not in spaces
    assert "team-b" not in answer.text


def test_repositories_and_tags_of_a_bound_private_space_with_digests(world: SelectorWorld) -> None:
    base = f"/api/v1/namespaces/{world.namespace_a}"
    repositories = get(world, "dev-a", f"{base}/repositories", registry="harbor", space="team-a")
    assert repositories.status_code == 200, repositories.text
    names = [r["name"] for r in repositories.json()["items"]]
    assert names == ["team-a/api", "team-a/tools/debug", "team-a/web"]
    tags = get(world, "dev-a", f"{base}/repositories/harbor/team-a/tools/debug/tags")
    assert tags.status_code == 200, tags.text
    body = tags.json()
    assert body["pullSecret"] == "registry-secret"
    newest = body["items"][0]
    assert newest["name"] == "2.0"
    digest = world.harbor.digest_of("team-a/tools/debug", "2.0")
    assert newest["reference"] == f"{HARBOR_HOST}/team-a/tools/debug:2.0"
    assert newest["digestReference"] == f"{HARBOR_HOST}/team-a/tools/debug@{digest}"
    search = get(world, "dev-a", f"{base}/repositories", registry="harbor", space="team-a", q="WE")
    assert [r["name"] for r in search.json()["items"]] == ["team-a/web"]


def test_the_platform_docker_registry_lists_pushed_repositories_and_tag_digests(
    world: SelectorWorld,
) -> None:
    base = f"/api/v1/namespaces/{world.namespace_a}"
    repositories = get(world, "dev-a", f"{base}/repositories", registry="platform", space="tools")
    assert [r["name"] for r in repositories.json()["items"]] == ["tools/busybox", "tools/curl"]
    tags = get(world, "dev-a", f"{base}/repositories/platform/tools/busybox/tags").json()
    (tag,) = tags["items"]
    assert tag["name"] == "1.36" and tag["digest"].startswith("sha256:")
    assert tags["needsPullSecret"] is False
    assert tag["reference"] == f"{world.registry.host}/tools/busybox:1.36"


def test_another_workspace_never_sees_nor_makes_spacegate_ask_for_team_a(
    world: SelectorWorld,
) -> None:
    base = f"/api/v1/namespaces/{world.namespace_b}"
    before = len(harbor_asked_about(world, "team-a"))
    spaces = get(world, "dev-b", f"{base}/spaces")
    assert spaces.status_code == 200 and "team-a" not in spaces.text
    hidden = get(world, "dev-b", f"{base}/repositories", registry="harbor", space="team-a")
    absent = get(world, "dev-b", f"{base}/repositories", registry="harbor", space="team-z")
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["message"].replace("team-a", "X") == absent.json()["message"].replace(
        "team-z", "X"
    )
    tags = get(world, "dev-b", f"{base}/repositories/harbor/team-a/web/tags")
    missing = get(world, "dev-b", f"{base}/repositories/harbor/team-q/web/tags")
    assert tags.status_code == missing.status_code == 404
    assert tags.json()["message"].replace("team-a", "X") == missing.json()["message"].replace(
        "team-q", "X"
    )
    everything = get(world, "dev-b", f"{base}/repositories", registry="harbor", limit="100")
    assert "team-a" not in everything.text
    assert len(harbor_asked_about(world, "team-a")) == before  # never asked on b's behalf
    # ... while b's own private space is there for b.
    own = get(world, "dev-b", f"{base}/repositories", registry="harbor", space="team-b")
    assert [r["name"] for r in own.json()["items"]] == [f"team-b/{TEAM_B_SECRET}"]


def test_a_developer_of_one_namespace_may_not_ask_about_another(world: SelectorWorld) -> None:
    answer = get(world, "dev-a", f"/api/v1/namespaces/{world.namespace_b}/spaces")
    assert answer.status_code == 403
    assert answer.json()["message"] == (
        f'forbidden: User "system:serviceaccount:{world.namespace_a}:dev-a" cannot list '
        f'resource "images" in API group "spacegate.io" in the namespace "{world.namespace_b}"'
    )


def test_no_token_is_401_and_a_token_without_the_role_is_403(world: SelectorWorld) -> None:
    path = f"/api/v1/namespaces/{world.namespace_a}/spaces"
    anonymous = get(world, None, path)
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
    nobody = get(world, "nobody", path)
    assert nobody.status_code == 403
    assert f"system:serviceaccount:{world.namespace_a}:nobody" in nobody.json()["message"]


def test_tokens_for_another_audience_or_of_a_deleted_account_are_401(
    world: SelectorWorld, control_plane: ControlPlane
) -> None:
    path = f"/api/v1/namespaces/{world.namespace_a}/repositories/harbor/team-a/api/tags"
    before = len(harbor_asked_about(world))
    foreign = token(control_plane, world.namespace_a, "dev-a", audiences=["vault"])
    assert get(world, foreign, path).status_code == 401
    service_account(control_plane, world.namespace_a, "short-lived")
    doomed = token(control_plane, world.namespace_a, "short-lived")
    with control_plane.http_client() as http:
        http.delete(f"/api/v1/namespaces/{world.namespace_a}/serviceaccounts/short-lived")
    answer = get(world, doomed, path)
    assert answer.status_code == 401
    assert "not accepted" in answer.json()["message"]
    assert len(harbor_asked_about(world)) == before  # refused before any registry call


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/api/v1/namespaces/Not_A_Namespace/spaces", {}, "namespace"),
        ("/api/v1/namespaces/{a}/repositories", {"q": "x" * 5000}, "q is 5000"),
        ("/api/v1/namespaces/{a}/repositories", {"page": "-1"}, "page must be"),
        ("/api/v1/namespaces/{a}/repositories", {"limit": "1000"}, "limit must be"),
        ("/api/v1/namespaces/{a}/repositories", {"space": "../../etc"}, "repository"),
        ("/api/v1/namespaces/{a}/repositories/harbor/Team-A/web/tags", {}, "repository"),
        ("/api/v1/namespaces/{a}/repositories/harbor/team-a/web", {}, "/tags"),
    ],
)
def test_bad_input_is_a_clear_400_and_never_reaches_a_registry(
    world: SelectorWorld, path: str, params: dict[str, str], words: str
) -> None:
    before = len(harbor_asked_about(world))
    answer = get(world, "dev-a", path.format(a=world.namespace_a), **params)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["message"]
    assert len(harbor_asked_about(world)) == before


def test_an_unknown_namespace_is_refused_before_it_is_looked_up_or_a_registry_asked(
    world: SelectorWorld,
) -> None:
    # dev-a may list images in its own namespace only, so RBAC refuses an unknown one (403)
    # before spacegate looks it up; with a grant there it is a 404 (tests/webhook/selector).
    before = len(harbor_asked_about(world))
    answer = get(world, "dev-a", "/api/v1/namespaces/no-such-namespace/spaces")
    assert answer.status_code == 403
    assert len(harbor_asked_about(world)) == before


def test_the_page_is_served_with_a_strict_content_security_policy(world: SelectorWorld) -> None:
    with world.spacegate.selector_client() as http:
        page = http.get("/")
        script = http.get("/static/app.js")
    assert page.status_code == 200 and "<title>spacegate image selector</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text


def test_a_new_namespace_and_a_relabel_reach_the_selector(
    world: SelectorWorld, control_plane: ControlPlane
) -> None:
    from tests.support.access import bind, ensure_namespace
    from tests.support.selector_world import WS
    from tests.support.waiting import eventually

    namespace = f"{world.namespace_a}-late"
    ensure_namespace(control_plane, namespace, {WS: "101"})
    service_account(control_plane, namespace, "dev")
    bind(control_plane, role="view", subject=(namespace, "dev"), namespace=namespace)
    late = token(control_plane, namespace, "dev")
    path = f"/api/v1/namespaces/{namespace}/spaces"

    def spaces() -> set[str]:
        answer = get(world, late, path)
        return {s["space"] for s in answer.json()["items"]} if answer.status_code == 200 else set()

    eventually(lambda: "team-a" in spaces(), "the new namespace in the selector")
    with control_plane.http_client() as http:
        http.patch(
            f"/api/v1/namespaces/{namespace}",
            json={"metadata": {"labels": {WS: "102"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()
    eventually(lambda: "team-b" in spaces() and "team-a" not in spaces(), "the relabel")
