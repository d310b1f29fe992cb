"""Harbor's paged listings, read once for projects and robots alike.

Against ``httpx.MockTransport``: each test scripts the pages a Harbor (or a proxy in front
of it) answers, and checks what the listing makes of them. The Harbor fake's own paging is
exercised through the sources and the robot client (``tests/webhook/live/sources``,
``tests/webhook/leader/provisioning``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from webhook.clients.errors import SourceError
from webhook.clients.harbor_paging import list_harbor, total_count
from webhook.clients.http import HttpClient, RetryPolicy

BASE = "https://h.example.com"
PATH = "/api/v2.0/projects"


def listing(
    pages: Callable[[int, int], httpx.Response], *, page_size: int = 2
) -> tuple[dict[str, int] | SourceError, list[str]]:
    """Run one listing; ``pages(page, call)`` answers each request. Returns the items (or
    the error) and the URLs asked for."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        page = int(parse_qs(urlsplit(str(request.url)).query).get("page", ["1"])[0])
        return pages(page, len(asked))

    async def run() -> dict[str, int] | SourceError:
        http = HttpClient(
            "harbor 'h'",
            client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            retry=RetryPolicy(retries=0),
        )
        try:
            return await list_harbor(
                http,
                f"{BASE}{PATH}",
                params={"with_detail": "false"},
                page_size=page_size,
                headers={},
                secrets=(),
                parse_page=lambda items, what: (
                    {str(i): 1 for i in items} if isinstance(items, list) else {}
                ),
                status_error=lambda response, what: SourceError(
                    f"{response.status_code} on {what}"
                ),
                noun="projects",
            )
        except SourceError as exc:
            return exc

    return asyncio.run(run()), asked


def page(items: list[str], *, total: int | None = None, link: str | None = None) -> httpx.Response:
    headers = {}
    if total is not None:
        headers["X-Total-Count"] = str(total)
    if link is not None:
        headers["Link"] = link
    return httpx.Response(200, json=items, headers=headers)


def test_next_links_are_followed_to_the_end_keeping_the_query() -> None:
    def pages(n: int, _: int) -> httpx.Response:
        nxt = f'<{PATH}?page={n - 1}&page_size=2>; rel="prev" , ' if n > 1 else ""
        if n < 3:
            nxt += f'<{PATH}?page={n + 1}&page_size=2&with_detail=false>; rel="next"'
        return page([f"p{n}a", f"p{n}b"][: 2 if n < 3 else 1], total=5, link=nxt or None)

    items, asked = listing(pages)
    assert items == {"p1a": 1, "p1b": 1, "p2a": 1, "p2b": 1, "p3a": 1}
    assert asked[0] == f"{BASE}{PATH}?page=1&page_size=2&with_detail=false"
    assert len(asked) == 3


def test_without_link_headers_the_total_decides_whether_to_ask_for_the_next_page() -> None:
    items, asked = listing(lambda n, _: page([f"p{n}a", f"p{n}b"][: 3 - n], total=3))
    assert items == {"p1a": 1, "p1b": 1, "p2a": 1}
    assert asked[1] == f"{BASE}{PATH}?page=2&page_size=2&with_detail=false"


def test_a_next_link_to_another_origin_is_refused() -> None:
    items, _ = listing(lambda n, _: page(["a"], link='<https://evil.example.com/x>; rel="next"'))
    assert isinstance(items, SourceError)
    assert "refusing to follow a pagination link to another origin" in str(items)


def test_a_total_that_moves_during_a_listing_lists_again() -> None:
    def pages(n: int, call: int) -> httpx.Response:
        total = 3 if call == 1 else 4  # a project created after the first page was read
        return page({1: ["a", "b"], 2: ["c", "d"]}.get(n, []), total=total)

    items, asked = listing(pages)
    assert items == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert len(asked) == 4  # page 1, page 2 (total moved), then pages 1 and 2 again


def test_a_registry_that_keeps_changing_yields_the_union_of_what_was_seen() -> None:
    def pages(n: int, call: int) -> httpx.Response:
        more = f'<{PATH}?page=2>; rel="next"' if n == 1 else None
        return page([f"seen{call}"], total=call, link=more)  # a new total on every page

    items, asked = listing(pages, page_size=100)
    assert isinstance(items, dict)
    assert len(asked) == 6 and set(items) == {f"seen{i}" for i in range(1, 7)}


def test_an_empty_page_that_links_onwards_ends_the_listing() -> None:
    items, asked = listing(lambda n, _: page([], link=f'<{PATH}?page={n + 1}>; rel="next"'))
    assert items == {}
    assert len(asked) == 3  # one page a listing, three listings, never a loop


def test_a_page_answered_with_an_error_fails_the_listing_naming_the_page() -> None:
    items, _ = listing(lambda n, _: page(["a", "b"], total=4) if n == 1 else httpx.Response(403))
    assert isinstance(items, SourceError)
    assert str(items) == f"403 on GET {PATH}?page=2&page_size=2&with_detail=false (page 2)"


@pytest.mark.parametrize(("header", "total"), [("12", 12), ("many", None), (None, None)])
def test_the_total_is_read_only_when_it_is_a_number(header: str | None, total: int | None) -> None:
    headers = {} if header is None else {"X-Total-Count": header}
    assert total_count(httpx.Response(200, headers=headers)) == total
