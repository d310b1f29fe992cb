"""The Harbor source: every project with its visibility, through pages, faults and auth.

Most tests run against :class:`tests.fakes.harbor.HarborFake` over real HTTP; a few script
exact responses with ``httpx.MockTransport`` where the fake cannot misbehave that way
(a server echoing the password, a hostile ``Link``, projects changing mid-listing).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
from tests.webhook.live.sources.conftest import FAST, RegistryFactory, fetch, fetch_error
from webhook.clients.errors import SourceError
from webhook.live.sources.harbor import HarborSource

SECRET = "Sup3r$ecret:PASSWORD-marker"


def project_pages(harbor: HarborFake) -> list[str]:
    """The query strings of the project list requests the fake received."""
    return [r.query for r in harbor.requests if r.path == "/api/v2.0/projects"]


def admin_source(
    harbor: HarborFake, registry_config: RegistryFactory, **options: Any
) -> HarborSource:
    registry = registry_config(harbor.url, "harbor", ADMIN_USER, ADMIN_PASSWORD)
    return HarborSource(registry, **{**FAST, **options})


# --------------------------------------------------------------------------- listing


def test_public_and_private_projects_are_listed_with_their_visibility(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)

    assert fetch(admin_source(harbor, registry_config)) == {"library": True, "team-a": False}


def test_250_projects_are_listed_in_three_pages_of_100_following_the_link_header(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_projects((f"p{i:03d}" for i in range(250)), public=False)

    spaces = fetch(admin_source(harbor, registry_config))

    assert len(spaces) == 250
    assert project_pages(harbor) == [f"page={n}&page_size=100&with_detail=false" for n in (1, 2, 3)]


def test_ten_thousand_projects_are_listed_in_a_few_seconds(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_projects((f"project-{i:05d}" for i in range(10_000)), public=False)
    started = time.perf_counter()

    spaces = fetch(admin_source(harbor, registry_config))

    assert len(spaces) == 10_000
    assert len(project_pages(harbor)) == 100
    assert time.perf_counter() - started < 20  # ~1.5 s on 2 idle cores


def test_a_proxy_cache_project_is_a_space_with_its_own_visibility(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("dockerhub-proxy", public=True, registry_id=3)
    harbor.add_project("private-proxy", public=False, registry_id=4)

    spaces = fetch(admin_source(harbor, registry_config))

    assert spaces == {"dockerhub-proxy": True, "private-proxy": False}


def test_a_system_robot_account_with_a_dollar_in_its_name_sees_every_project(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)
    login = harbor.add_robot("spacegate-lister", SECRET)
    registry = registry_config(harbor.url, "harbor", login, SECRET)

    spaces = fetch(HarborSource(registry, **FAST))

    assert login == "robot$spacegate-lister"
    assert spaces == {"library": True, "team-a": False}
    assert {r.username for r in harbor.requests} == {"robot$spacegate-lister"}


def test_a_project_robot_sees_public_projects_and_its_own_only(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)
    harbor.add_project("team-b", public=False)
    login = harbor.add_robot("puller", SECRET, project="team-a")
    registry = registry_config(harbor.url, "harbor", login, SECRET)

    spaces = fetch(HarborSource(registry, **FAST))

    assert login == "robot$team-a+puller"
    assert spaces == {"library": True, "team-a": False}


def test_anonymous_access_sees_only_public_projects_and_needs_no_credentials(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.add_project("team-a", public=False)

    spaces = fetch(HarborSource(registry_config(harbor.url), **FAST))

    assert spaces == {"library": True}
    assert all(r.auth_scheme is None for r in harbor.requests)


def test_a_project_switched_to_public_shows_as_public_at_the_next_fetch(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("team-a", public=False)
    assert fetch(admin_source(harbor, registry_config)) == {"team-a": False}

    harbor.set_public("team-a", True)

    assert fetch(admin_source(harbor, registry_config)) == {"team-a": True}


# --------------------------------------------------------------------------- credentials


def test_wrong_credentials_fail_with_harbors_401_naming_the_registry_without_retrying(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    registry = registry_config(harbor.url, "harbor", ADMIN_USER, SECRET, name="prod")

    error = fetch_error(HarborSource(registry, **FAST))

    assert str(error) == "harbor 'prod': 401 UNAUTHORIZED: unauthorized"
    # One request: Harbor would have listed public projects only, not refused.
    assert [r.path for r in harbor.requests] == ["/api/v2.0/users/current/permissions"]


def test_a_rotated_password_file_is_used_at_the_next_fetch(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("team-a", public=False)
    registry = registry_config(harbor.url, "harbor", ADMIN_USER, "old-password")
    assert registry.credentials is not None and registry.credentials.password_file
    password_file = registry.credentials.password_file

    async def rotate() -> dict[str, bool]:
        source = HarborSource(registry, **FAST)
        try:
            with pytest.raises(SourceError, match="401"):
                await source.fetch()
            with open(password_file, "w") as handle:
                handle.write(ADMIN_PASSWORD + "\n")
            return await source.fetch()
        finally:
            await source.aclose()

    assert asyncio.run(rotate()) == {"team-a": False}


def test_an_unreadable_password_file_is_reported_by_path(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    registry = registry_config(harbor.url, "harbor", ADMIN_USER, SECRET)
    assert registry.credentials is not None and registry.credentials.password_file
    path = registry.credentials.password_file
    os.remove(path)

    error = fetch_error(HarborSource(registry, **FAST))

    assert str(error) == (
        f"harbor 'main': cannot read credentials.passwordFile {path}: No such file or directory"
    )
    assert harbor.requests == []


# --------------------------------------------------------------------------- faults


def test_server_errors_are_retried_until_the_listing_succeeds(
    harbor: HarborFake, registry_config: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harbor.add_project("library", public=True)
    harbor.faults.pass_next(1)  # the credential check
    harbor.faults.fail_next(2, 500)

    assert fetch(admin_source(harbor, registry_config)) == {"library": True}
    assert len(project_pages(harbor)) == 3
    assert "500 UNKNOWN: internal server error; retry 1/3" in caplog.text


def test_a_server_that_keeps_failing_gives_up_after_the_retries(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.fail_next(10, 503)

    error = fetch_error(admin_source(harbor, registry_config, retries=2))

    assert str(error) == (
        "harbor 'main': 503 UNKNOWN: service unavailable on "
        "GET /api/v2.0/users/current/permissions (gave up after 3 attempts)"
    )
    assert len(harbor.requests) == 3


def test_a_429_is_retried_after_the_delay_in_retry_after(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.faults.fail_next(1, 429, retry_after="7")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    spaces = fetch(admin_source(harbor, registry_config, sleep=sleep))

    assert spaces == {"library": True}
    assert waits == [7.0]


def test_retries_wait_exponentially_longer_with_jitter(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.faults.fail_next(3, 502)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    source = admin_source(harbor, registry_config, backoff=1.0, sleep=sleep, rng=random.Random(7))

    assert fetch(source) == {"library": True}
    assert len(waits) == 3
    for wait, ceiling in zip(waits, (1.0, 2.0, 4.0), strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_a_retry_after_beyond_the_cap_ends_the_fetch_at_once(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.fail_next(5, 429, retry_after="600")

    error = fetch_error(admin_source(harbor, registry_config))

    assert "429 TOO_MANY_REQUEST: too many requests" in str(error)
    assert "Retry-After 600s exceeds 30s" in str(error)
    assert len(harbor.requests) == 1


def test_a_response_slower_than_the_read_timeout_is_retried(
    harbor: HarborFake, registry_config: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harbor.add_project("library", public=True)
    harbor.faults.pass_next(1)
    harbor.faults.delay_next(1, seconds=0.6)
    timeout = httpx.Timeout(2.0, read=0.2)

    assert fetch(admin_source(harbor, registry_config, timeout=timeout)) == {"library": True}
    assert "read timeout; retry 1/3" in caplog.text


def test_a_harbor_that_is_always_too_slow_fails_with_a_read_timeout(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.delay_next(2, seconds=0.5)
    timeout = httpx.Timeout(2.0, read=0.1)

    error = fetch_error(admin_source(harbor, registry_config, timeout=timeout, retries=1))

    assert str(error) == (
        "harbor 'main': GET /api/v2.0/users/current/permissions: read timeout "
        "(gave up after 2 attempts)"
    )


def test_truncated_json_is_an_error_naming_the_path_and_page(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_projects((f"p{i:03d}" for i in range(150)), public=True)
    harbor.faults.pass_next(2)  # credential check, page 1
    harbor.faults.truncate_next(1)

    error = fetch_error(admin_source(harbor, registry_config))

    assert str(error).startswith(
        "harbor 'main': invalid JSON in the response to "
        "GET /api/v2.0/projects?page=2&page_size=100&with_detail=false (page 2)"
    )
    assert len(project_pages(harbor)) == 2  # invalid JSON is not retried


def test_an_html_page_instead_of_json_is_an_error(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.pass_next(1)
    harbor.faults.garbage_next(1)

    error = fetch_error(admin_source(harbor, registry_config))

    assert "invalid JSON in the response to GET /api/v2.0/projects?page=1" in str(error)


def test_a_connection_dropped_mid_response_is_retried(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_project("library", public=True)
    harbor.faults.pass_next(1)
    harbor.faults.drop_next(1)

    assert fetch(admin_source(harbor, registry_config)) == {"library": True}
    assert len(project_pages(harbor)) == 2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_refused_connection_fails_after_the_retries_with_a_clear_message(
    registry_config: RegistryFactory,
) -> None:
    registry = registry_config(f"http://127.0.0.1:{closed_port()}", name="down")

    error = fetch_error(HarborSource(registry, retries=2, backoff=0.001))

    assert str(error).startswith(
        "harbor 'down': GET /api/v2.0/projects?page=1&page_size=100&with_detail=false "
        "(page 1): connection failed: "
    )
    assert str(error).endswith("(gave up after 3 attempts)")


# --------------------------------------------------------------------------- the credential stays secret


def _mock_harbor(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


FAULTS: dict[str, Callable[[HarborFake], object]] = {
    "401 from a wrong password": lambda h: h,
    "500 until the retries run out": lambda h: h.faults.fail_next(10, 500),
    "429 with a long Retry-After": lambda h: h.faults.fail_next(1, 429, retry_after="999"),
    "read timeout": lambda h: h.faults.delay_next(4, seconds=0.3),
    "truncated JSON": lambda h: h.faults.pass_next(1).truncate_next(1),
    "dropped connections": lambda h: h.faults.drop_next(10),
    "HTML instead of JSON": lambda h: h.faults.pass_next(1).garbage_next(1),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_the_password_never_appears_in_errors_or_logs(
    fault: str,
    harbor: HarborFake,
    registry_config: RegistryFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    username = "robot$spacegate"
    if fault.startswith("401"):
        harbor.add_robot("spacegate", "a-different-secret")
    else:
        harbor.add_robot("spacegate", SECRET)
    harbor.add_project("library", public=True)
    FAULTS[fault](harbor)
    registry = registry_config(harbor.url, "harbor", username, SECRET)
    source = HarborSource(registry, retries=2, backoff=0.001, timeout=httpx.Timeout(2, read=0.1))

    error = fetch_error(source)

    header = base64.b64encode(f"{username}:{SECRET}".encode()).decode()
    for text in (str(error), repr(error), caplog.text, repr(source)):
        assert SECRET not in text
        assert header not in text
        assert "Sup3r" not in text
    assert "harbor 'main'" in str(error)


def test_a_server_echoing_the_password_in_an_error_has_it_masked(
    registry_config: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"bad login for {request.headers['authorization']} / {SECRET}"
        return httpx.Response(400, json={"errors": [{"code": "BAD_REQUEST", "message": echoed}]})

    registry = registry_config("https://harbor.example.com", "harbor", "admin", SECRET)
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    error = fetch_error(source)

    assert (
        str(error) == "harbor 'main': 400 BAD_REQUEST: bad login for *** / *** on "
        "GET /api/v2.0/users/current/permissions"
    )
    assert SECRET not in caplog.text


# --------------------------------------------------------------------------- scripted servers


def test_a_redirect_is_reported_with_its_target_instead_of_followed(
    registry_config: RegistryFactory,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        target = str(request.url).replace("http://", "https://")
        return httpx.Response(308, headers={"Location": target})

    registry = registry_config("http://harbor.example.com")
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    error = fetch_error(source)

    assert str(error) == (
        "harbor 'main': 308 Permanent Redirect on GET /api/v2.0/projects?page=1&page_size=100"
        "&with_detail=false (page 1), redirected to https://harbor.example.com/api/v2.0/"
        "projects?page=1&page_size=100&with_detail=false; put the final URL in the config"
    )


def test_a_pagination_link_to_another_host_is_refused(registry_config: RegistryFactory) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json=[{"name": "library", "metadata": {"public": "true"}}],
            headers={"Link": '<https://attacker.example/steal?page=2>; rel="next"'},
        )

    registry = registry_config("https://harbor.example.com")
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    error = fetch_error(source)

    assert "refusing to follow a pagination link to another origin" in str(error)
    assert all(url.startswith("https://harbor.example.com/") for url in seen)


def test_a_project_deleted_between_pages_makes_the_listing_start_again(
    registry_config: RegistryFactory,
) -> None:
    """Offset paging skips a project when one before it disappears; the changed
    X-Total-Count shows it, and a second pass sees everything that still exists."""
    names = [f"p{i:03d}" for i in range(150)]
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        current = names if calls["n"] == 1 else names[1:]  # p000 deleted after page 1
        page = int(request.url.params["page"])
        chunk = current[(page - 1) * 100 : page * 100]
        body = [{"name": n, "metadata": {"public": "false"}} for n in chunk]
        headers = {"X-Total-Count": str(len(current))}
        if page * 100 < len(current):
            headers["Link"] = f'</api/v2.0/projects?page={page + 1}&page_size=100>; rel="next"'
        return httpx.Response(200, json=body, headers=headers)

    registry = registry_config("https://harbor.example.com")
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    spaces = fetch(source)

    assert set(spaces) == set(names[1:])  # p100 (skipped in the first pass) is there


def test_without_a_link_header_the_total_count_drives_the_paging(
    registry_config: RegistryFactory,
) -> None:
    names = [f"p{i:03d}" for i in range(230)]

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        chunk = names[(page - 1) * 100 : page * 100]
        body = [{"name": n, "metadata": {"public": "true"}} for n in chunk]
        return httpx.Response(200, json=body, headers={"X-Total-Count": "230"})

    registry = registry_config("https://harbor.example.com")
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    assert len(fetch(source)) == 230


def test_a_project_without_metadata_public_is_taken_as_private(
    registry_config: RegistryFactory,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"name": "odd", "metadata": {}}, {"name": "bare"}])

    registry = registry_config("https://harbor.example.com")
    source = HarborSource(registry, client=_mock_harbor(handler), **FAST)

    assert fetch(source) == {"odd": False, "bare": False}


# --------------------------------------------------------------------------- the fake itself


def test_the_fake_formats_link_headers_as_harbor_does(harbor: HarborFake) -> None:
    harbor.add_projects((f"p{i:03d}" for i in range(250)), public=True)

    response = httpx.get(f"{harbor.url}/api/v2.0/projects?page=2&page_size=100&with_detail=false")

    assert response.headers["x-total-count"] == "250"
    assert response.headers["link"] == (
        '</api/v2.0/projects?page=1&page_size=100&with_detail=false>; rel="prev" , '
        '</api/v2.0/projects?page=3&page_size=100&with_detail=false>; rel="next"'
    )
    assert response.json()[0]["metadata"] == {"public": "true"}


def test_the_fake_refuses_pages_larger_than_100_like_go_swagger(harbor: HarborFake) -> None:
    response = httpx.get(f"{harbor.url}/api/v2.0/projects?page_size=101")

    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            {
                "code": "UNPROCESSABLE_ENTITY",
                "message": "validation failure list:\n"
                "page_size in query should be less than or equal to 100",
            }
        ]
    }


def test_the_fake_filters_by_visibility_and_fuzzy_name(harbor: HarborFake) -> None:
    harbor.add_project("team-a", public=False)
    harbor.add_project("team-b", public=True)
    harbor.add_project("library", public=True)
    auth = (ADMIN_USER, ADMIN_PASSWORD)
    url = f"{harbor.url}/api/v2.0/projects"

    private = httpx.get(url, params={"public": "false"}, auth=auth).json()
    teams = httpx.get(url, params={"name": "team"}, auth=auth).json()
    anonymous_private = httpx.get(url, params={"public": "false"})

    assert [p["name"] for p in private] == ["team-a"]
    assert [p["name"] for p in teams] == ["team-a", "team-b"]
    assert anonymous_private.json() == []
    assert anonymous_private.headers["x-total-count"] == "0"


def test_the_fake_treats_wrong_credentials_as_anonymous_on_the_project_list(
    harbor: HarborFake,
) -> None:
    harbor.add_project("team-a", public=False)
    harbor.add_project("library", public=True)
    wrong = (ADMIN_USER, "wrong")

    listing = httpx.get(f"{harbor.url}/api/v2.0/projects", auth=wrong)
    permissions = httpx.get(f"{harbor.url}/api/v2.0/users/current/permissions", auth=wrong)
    ping = httpx.get(f"{harbor.url}/api/v2.0/ping")

    assert [p["name"] for p in listing.json()] == ["library"]
    assert permissions.status_code == 401
    assert permissions.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}
    assert (ping.status_code, ping.text) == (200, "Pong")
