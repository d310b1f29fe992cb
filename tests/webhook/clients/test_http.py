"""The HTTP plumbing every registry source shares: credentials, retries, Link, origins.

Against ``httpx.MockTransport``: each test is one situation a registry or a proxy produces,
and what the source must make of it (retry or not, what the error says, what it never says).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from policy.config import Credentials, Registry
from webhook.clients.errors import SourceError
from webhook.clients.http import (
    BasicCredentials,
    HttpClient,
    RetryPolicy,
    error_detail,
    load_credentials,
    parse_link_header,
    request_path,
    safe_text,
    same_origin_url,
)

Handler = Callable[[httpx.Request], httpx.Response]


def registry(
    tmp_path: Path, user: str | None = "robot", password: str | None = "s3cret"
) -> Registry:
    files: dict[str, str | None] = {"username_file": None, "password_file": None}
    if user is not None:
        (tmp_path / "user").write_text(user + "\n")
        files["username_file"] = str(tmp_path / "user")
    if password is not None:
        (tmp_path / "pass").write_text(password + "\n")
        files["password_file"] = str(tmp_path / "pass")
    return Registry(
        name="h",
        type="harbor",
        url="https://h.example.com",
        hosts=("h.example.com",),
        credentials=Credentials(**files),
    )


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


# --------------------------------------------------------------------------- credentials


def test_credentials_are_read_from_their_files_without_the_trailing_newline(
    tmp_path: Path,
) -> None:
    creds = load_credentials(registry(tmp_path), "harbor 'h'")
    assert creds == BasicCredentials("robot", "s3cret")
    assert "s3cret" not in repr(creds)
    assert creds is not None and creds.header == "Basic cm9ib3Q6czNjcmV0"


def test_a_registry_without_credentials_is_anonymous(tmp_path: Path) -> None:
    plain = Registry(name="h", type="harbor", url="https://h", hosts=("h",))
    assert load_credentials(plain, "x") is None


def test_half_a_credential_or_an_unreadable_file_is_an_error_naming_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(SourceError, match=r"credentials\.passwordFile is missing"):
        load_credentials(registry(tmp_path, password=None), "harbor 'h'")
    broken = registry(tmp_path)
    Path(str(broken.credentials and broken.credentials.password_file)).unlink()
    with pytest.raises(SourceError, match=r"cannot read credentials.passwordFile .*/pass"):
        load_credentials(broken, "harbor 'h'")


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


def test_link_headers_from_harbor_and_distribution_are_parsed() -> None:
    harbor = '</api/v2.0/projects?page=1>; rel="prev" , </api/v2.0/projects?page=3>; rel="next"'
    distribution = '</v2/_catalog?last=b&n=100>; rel="next"'
    assert parse_link_header([harbor]) == {
        "prev": "/api/v2.0/projects?page=1",
        "next": "/api/v2.0/projects?page=3",
    }
    assert parse_link_header([distribution]) == {"next": "/v2/_catalog?last=b&n=100"}
    assert parse_link_header(["garbage", ""]) == {}


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
