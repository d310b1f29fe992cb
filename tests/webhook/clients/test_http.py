"""The HTTP plumbing every registry client shares: retries, safe errors, Link, origins.

Against ``httpx.MockTransport``: each test is one situation a registry or a proxy produces,
and what the source must make of it (retry or not, what the error says, what it never says).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import httpx
import pytest

from webhook.clients.errors import SourceError
from webhook.clients.http import (
    HttpClient,
    RetryPolicy,
    error_detail,
    next_link,
    request_path,
    safe_text,
    same_origin_url,
)

Handler = Callable[[httpx.Request], httpx.Response]


def fetch(
    handler: Handler, *, retries: int = 3, secrets: tuple[str, ...] = ()
) -> tuple[httpx.Response | SourceError, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> httpx.Response | SourceError:
        client = HttpClient(
            "harbor 'h'",
            client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            retry=RetryPolicy(retries=retries, backoff=1.0, max_backoff=4.0),
            sleep=sleep,
            rng=random.Random(3),
        )
        try:
            return await client.get(
                "https://h.example.com/api/v2.0/projects", what="GET projects", secrets=secrets
            )
        except SourceError as exc:
            return exc

    return asyncio.run(run()), waits


def test_safe_text_masks_secrets_longest_first_and_keeps_one_short_line() -> None:
    text = safe_text("token abc and abcdef\nnext\x00line " + "x" * 500, ["abc", "abcdef"])
    assert "abc" not in text
    assert "\n" not in text and "\x00" not in text
    assert len(text) <= 300


# --------------------------------------------------------------------------- retries


def test_5xx_is_retried_with_growing_jittered_waits_then_succeeds() -> None:
    replies = iter([502, 503, 200])
    result, waits = fetch(lambda request: httpx.Response(next(replies), json={}))
    assert isinstance(result, httpx.Response) and result.status_code == 200
    assert len(waits) == 2
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_4xx_is_never_retried_and_comes_back_to_the_caller() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "no"}]})

    result, waits = fetch(handler)
    assert isinstance(result, httpx.Response) and result.status_code == 401
    assert calls == [1] and waits == []


def test_a_server_error_that_persists_gives_up_saying_how_often_it_tried() -> None:
    result, _ = fetch(lambda request: httpx.Response(500, text="boom"))
    assert isinstance(result, SourceError)
    assert "gave up after 4 attempts" in str(result)


def test_a_retry_after_is_honoured_when_short() -> None:
    replies = iter([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200)])
    result, waits = fetch(lambda request: next(replies))
    assert isinstance(result, httpx.Response)
    assert waits == [3.0]


def test_a_connection_failure_is_retried_and_reported_without_the_url_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    result, waits = fetch(handler, retries=1)
    assert isinstance(result, SourceError)
    assert "connection failed: connection refused (gave up after 2 attempts)" in str(result)
    assert len(waits) == 1


def test_an_echoed_password_never_reaches_the_error() -> None:
    result, _ = fetch(
        lambda request: httpx.Response(
            503, text="bad auth s3cret", headers={"content-type": "text/plain"}
        ),
        retries=0,
        secrets=("s3cret",),
    )
    assert isinstance(result, SourceError)
    assert "s3cret" not in str(result)
    assert "***" in str(result)


def test_error_bodies_in_the_registry_format_are_summarised() -> None:
    response = httpx.Response(
        403, json={"errors": [{"code": "FORBIDDEN", "message": "forbidden"}, {"code": "X"}]}
    )
    assert error_detail(response) == "403 FORBIDDEN: forbidden; X"
    assert error_detail(httpx.Response(502, html="<html>bad gateway</html>")) == "502 Bad Gateway"


# --------------------------------------------------------------------------- pagination


def links(*values: str) -> httpx.Response:
    """A response carrying ``Link`` headers as a registry sends them."""
    return httpx.Response(200, headers=[("link", value) for value in values])


def test_the_next_page_is_read_from_harbors_and_distributions_link_headers() -> None:
    harbor = '</api/v2.0/projects?page=1>; rel="prev" , </api/v2.0/projects?page=3>; rel="next"'
    distribution = '</v2/_catalog?last=b&n=100>; rel="next"'
    assert next_link(links(harbor)) == "/api/v2.0/projects?page=3"
    assert next_link(links(distribution)) == "/v2/_catalog?last=b&n=100"
    # Two Link headers (a proxy may split them) read like one joined with a comma.
    assert next_link(links('</p?page=1>; rel="prev"', '</p?page=3>; rel="next"')) == "/p?page=3"


def test_without_a_next_link_there_is_no_next_page() -> None:
    assert next_link(links('</api/v2.0/projects?page=1>; rel="prev"')) is None
    assert next_link(links("garbage", "")) is None
    assert next_link(links('<>; rel="next"')) is None
    assert next_link(httpx.Response(200)) is None


@pytest.mark.parametrize(
    ("link", "allowed"),
    [
        ("/api/v2.0/projects?page=2", True),
        ("https://h.example.com:443/api/v2.0/projects?page=2", True),  # default port
        ("https://evil.example.com/steal", False),
        ("http://h.example.com/api", False),  # another scheme
        ("https://h.example.com:8443/api", False),  # another port
        ("//evil.example.com/x", False),
    ],
)
def test_pagination_links_may_not_leave_the_registrys_origin(link: str, allowed: bool) -> None:
    base = "https://h.example.com/api/v2.0/projects?page=1"
    if allowed:
        assert same_origin_url(base, link, "https://h.example.com", "harbor 'h'").startswith(
            "https://h.example.com"
        )
    else:
        with pytest.raises(SourceError, match="refusing to follow a pagination link"):
            same_origin_url(base, link, "https://h.example.com", "harbor 'h'")


def test_messages_show_a_requests_path_never_its_userinfo_or_host() -> None:
    assert request_path("https://u:p@h.example.com/v2/_catalog?n=100") == "/v2/_catalog?n=100"
