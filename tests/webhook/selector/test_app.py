"""The selector app in-process over the Harbor fake: what it answers, what it refuses, and
that nothing it refuses reaches Harbor."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from policy.snapshot import Snapshot
from tests.fakes.harbor import HarborFake
from webhook.selector.app import create_selector_app
from webhook.selector.catalog import Catalog

from .conftest import HOST, Tokens


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def get(
    client: httpx.AsyncClient, who: str | None, path: str, **params: str
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {who}"} if who else {}
    async with client:
        return await client.get(path, headers=headers, params=params)


def asked(harbor: HarborFake, project: str) -> int:
    return sum(r.path.startswith(f"/api/v2.0/projects/{project}/") for r in harbor.requests)


def test_a_namespace_gets_its_spaces_and_never_another_workspaces(
    client: httpx.AsyncClient,
) -> None:
    answer = run(get(client, "a", "/api/v1/namespaces/a/spaces"))
    assert answer.status_code == 200
    assert [(s["space"], s["why"]) for s in answer.json()["items"]] == [
        ("library", "public space"),
        ("team-a", "bound to workspace 101"),
    ]
    assert answer.headers["cache-control"] == "no-store"


def test_a_cold_first_page_is_one_harbor_page_and_later_pages_come_from_the_cached_list(
    harbor: HarborFake, snapshot: Snapshot, tokens: Tokens
) -> None:
    catalog = Catalog(lambda: snapshot)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        app = create_selector_app(catalog, tokens)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://s"
        ) as http:
            first = (
                await http.get(
                    "/api/v1/namespaces/a/repositories",
                    params={"registry": "harbor", "space": "team-a", "limit": "10"},
                    headers={"Authorization": "Bearer a"},
                )
            ).json()
            for _ in range(100):  # the whole list is being fetched in the background
                if catalog.repositories_cache.peek(("repositories", "harbor", "team-a")):
                    break
                await asyncio.sleep(0.02)
            before = len(harbor.requests)
            third = (
                await http.get(
                    "/api/v1/namespaces/a/repositories",
                    params={"registry": "harbor", "space": "team-a", "limit": "10", "page": "3"},
                    headers={"Authorization": "Bearer a"},
                )
            ).json()
            return first, third, len(harbor.requests) - before

    first, third, calls = run(scenario())
    assert first["total"] == 121 and len(first["items"]) == 10
    assert first["items"][0] == {
        "registry": "harbor",
        "space": "team-a",
        "name": "team-a/svc-000",
        "image": f"{HOST}/team-a/svc-000",
        "artifactCount": 2,
        "updated": first["items"][0]["updated"],
        "needsPullSecret": True,
    }
    assert third["items"][0]["name"] == "team-a/svc-020"
    assert third["total"] == 121 and calls == 0


def test_hidden_and_absent_spaces_and_repositories_answer_alike_without_asking_harbor(
    client: httpx.AsyncClient, harbor: HarborFake
) -> None:
    before = asked(harbor, "team-b")

    async def scenario() -> list[httpx.Response]:
        async with client:
            auth = {"Authorization": "Bearer a"}
            return [
                await client.get(
                    "/api/v1/namespaces/a/repositories",
                    params={"registry": "harbor", "space": space},
                    headers=auth,
                )
                for space in ("team-b", "team-z")
            ] + [
                await client.get(
                    f"/api/v1/namespaces/a/repositories/harbor/{repo}/tags", headers=auth
                )
                for repo in ("team-b/payroll", "team-z/payroll")
            ]

    hidden_space, absent_space, hidden_repo, absent_repo = run(scenario())
    for hidden, absent, secret, other in (
        (hidden_space, absent_space, "team-b", "team-z"),
        (hidden_repo, absent_repo, "team-b", "team-z"),
    ):
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["message"].replace(secret, "?") == absent.json()["message"].replace(
            other, "?"
        )
        assert hidden.headers.keys() == absent.headers.keys()
    assert asked(harbor, "team-b") == before


def test_an_unknown_namespace_is_404_and_refusals_pass_through(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    async def scenario() -> list[httpx.Response]:
        async with client:
            return [
                await client.get(
                    "/api/v1/namespaces/zz/spaces", headers={"Authorization": "Bearer zz"}
                ),
                await client.get("/api/v1/namespaces/a/spaces"),
                await client.get(
                    "/api/v1/namespaces/a/spaces", headers={"Authorization": "Bearer b"}
                ),
                await client.post(
                    "/api/v1/namespaces/a/spaces", headers={"Authorization": "Bearer a"}
                ),
                await client.get("/nowhere"),
            ]

    unknown, anonymous, other, post, nowhere = run(scenario())
    assert unknown.status_code == 404 and unknown.json()["message"] == 'namespace "zz" not found'
    assert anonymous.status_code == 401
    assert (
        other.status_code == 403
        and 'User "b" cannot list resource "images"' in other.json()["message"]
    )
    assert post.status_code == 405 and nowhere.status_code == 404
    assert nowhere.json()["kind"] == "Status"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/namespaces/a/repositories", {"q": "x" * 10_000}),
        ("/api/v1/namespaces/a/repositories", {"page": "-3"}),
        ("/api/v1/namespaces/a/repositories", {"limit": "abc"}),
        ("/api/v1/namespaces/a/repositories", {"space": "TEAM-A"}),
        ("/api/v1/namespaces/a/repositories", {"registry": "../x"}),
        ("/api/v1/namespaces/a/repositories/harbor/team-a/Web/tags", {}),
        ("/api/v1/namespaces/a/repositories/harbor/team-a/web", {}),
        ("/api/v1/namespaces/A/spaces", {}),
    ],
)
def test_bad_input_is_400_and_never_a_registry_call(
    client: httpx.AsyncClient, harbor: HarborFake, path: str, params: dict[str, str]
) -> None:
    before = len(harbor.requests)
    answer = run(get(client, "a", path, **params))
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == "BadRequest"
    assert len(harbor.requests) == before


def test_a_search_that_no_repository_name_can_match_asks_no_registry(
    client: httpx.AsyncClient, harbor: HarborFake
) -> None:
    before = len(harbor.requests)
    answer = run(
        get(
            client,
            "a",
            "/api/v1/namespaces/a/repositories",
            registry="harbor",
            space="team-a",
            q="<img src=x>",
        )
    )
    assert answer.status_code == 200 and answer.json()["items"] == []
    assert len(harbor.requests) == before


def test_an_outage_serves_the_last_listing_marked_stale(
    harbor: HarborFake, snapshot: Snapshot, tokens: Tokens
) -> None:
    catalog = Catalog(lambda: snapshot, ttl=0.05)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        app = create_selector_app(catalog, tokens)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://s"
        ) as http:
            path = "/api/v1/namespaces/a/repositories/harbor/team-a/web/frontend/tags"
            fresh = (await http.get(path, headers={"Authorization": "Bearer a"})).json()
            await asyncio.sleep(0.1)
            harbor.faults.fail_next(10, 503)
            stale = (await http.get(path, headers={"Authorization": "Bearer a"})).json()
            harbor.faults.clear()
            return fresh, stale

    fresh, stale = run(scenario())
    assert fresh["stale"] is False and stale["stale"] is True
    assert stale["items"] == fresh["items"] and stale["ageSeconds"] >= 0.1
    assert "503" in stale["error"]


def test_hostile_names_from_a_registry_never_reach_the_page(
    harbor: HarborFake, snapshot: Snapshot, tokens: Tokens
) -> None:
    harbor.add_repository("team-a", "<img src=x onerror=alert(1)>", ("1",))
    harbor.add_repository("team-a", "zz-ok", ("good", "bad\ntag: x", "-x"))
    catalog = Catalog(lambda: snapshot)

    async def scenario() -> tuple[str, dict[str, Any]]:
        app = create_selector_app(catalog, tokens)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://s"
        ) as http:
            auth = {"Authorization": "Bearer a"}
            listing = await http.get(
                "/api/v1/namespaces/a/repositories",
                params={"registry": "harbor", "space": "team-a", "q": "zz", "limit": "100"},
                headers=auth,
            )
            everything = await http.get(
                "/api/v1/namespaces/a/repositories",
                params={"registry": "harbor", "limit": "100"},
                headers=auth,
            )
            tags = await http.get(
                "/api/v1/namespaces/a/repositories/harbor/team-a/zz-ok/tags", headers=auth
            )
            return listing.text + everything.text, tags.json()

    listed, tags = run(scenario())
    assert "<img" not in listed
    assert [t["name"] for t in tags["items"]] == ["good"]


def test_asking_again_for_a_missing_repository_costs_no_registry_call(
    harbor: HarborFake, client: httpx.AsyncClient
) -> None:
    async def scenario() -> list[int]:
        async with client:
            auth = {"Authorization": "Bearer a"}
            path = "/api/v1/namespaces/a/repositories/harbor/team-a/nothing-here/tags"
            statuses = []
            for _ in range(5):
                statuses.append((await client.get(path, headers=auth)).status_code)
            return statuses

    before = len(harbor.requests)
    assert run(scenario()) == [404] * 5
    assert len(harbor.requests) - before == 1
