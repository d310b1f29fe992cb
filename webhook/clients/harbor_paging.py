"""Harbor's paged listings (projects, robots): the one loop over pages, and what it trusts.

Harbor answers a listing a page at a time (``page``, ``page_size`` at most 100) with the
total in ``X-Total-Count`` and the next page in a ``Link: <...>; rel="next"`` header
(several links joined by ``" , "``). :func:`list_harbor` follows those until the listing is
complete:

- a next link is followed only to the registry's own origin (:func:`same_origin_url`): the
  request carries the registry credential;
- when a proxy strips the ``Link`` header but the total says there is more, the next page is
  asked for by number;
- an empty page that still links onwards ends the listing (it would loop for ever), and so
  does a page count no real Harbor reaches;
- offset pagination can skip an item when another is deleted between two page requests, so
  when ``X-Total-Count`` changes during a listing it is listed again (twice at most); if
  the registry keeps changing, the union of what was seen is returned, which errs towards
  keeping an item (a space, a robot) rather than dropping one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar
from urllib.parse import urlencode

import httpx

from webhook.clients.errors import SourceError
from webhook.clients.http import HttpClient, next_link, parse_json, request_path, same_origin_url

__all__ = ["MAX_PAGE_SIZE", "list_harbor", "total_count"]

log = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 100  # swagger: page_size maximum 100
LISTING_ATTEMPTS: Final = 3
MAX_PAGES: Final = 100_000  # a loop guard far above any real Harbor (10 M items)

K = TypeVar("K")
V = TypeVar("V")


def total_count(response: httpx.Response) -> int | None:
    """``X-Total-Count`` of a listing page, or None when absent or not a number."""
    value = response.headers.get("x-total-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def list_harbor(
    http: HttpClient,
    url: str,
    *,
    params: Mapping[str, str],
    page_size: int,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    parse_page: Callable[[object, str], dict[K, V]],
    status_error: Callable[[httpx.Response, str], SourceError],
    noun: str,
) -> dict[K, V]:
    """Every item of the listing at ``url`` (the registry's base URL and the API path).

    ``params`` are added to every page request (``q``, ``with_detail``). ``parse_page``
    turns one page's JSON into items by key (raising :class:`SourceError` for a malformed
    page); ``status_error`` is the error for a page answered with another status than 200.
    ``noun`` names the items in messages ("projects", "robots").
    """
    origin = url

    def numbered(page: int) -> str:
        return f"{url}?{urlencode({'page': page, 'page_size': page_size, **params})}"

    async def list_once() -> tuple[dict[K, V], bool]:
        """One pass over all pages: (items, whether the total stayed the same)."""
        next_url = numbered(1)
        items: dict[K, V] = {}
        first_total: int | None = None
        consistent = True
        for page in range(1, MAX_PAGES + 1):
            what = f"GET {request_path(next_url)} (page {page})"
            response = await http.get(next_url, what=what, headers=headers, secrets=secrets)
            if response.status_code != 200:
                raise status_error(response, what)
            found = parse_page(parse_json(response, http.label, what), what)
            items.update(found)
            count = len(found)
            total = total_count(response)
            if first_total is None:
                first_total = total
            elif total is not None and total != first_total:
                consistent = False
            log.debug("%s: page %d: %d %s (total %s)", http.label, page, count, noun, total)
            link = next_link(response)
            if link is not None:
                next_url = same_origin_url(str(response.url), link, origin, http.label)
            elif total is not None and count and page * page_size < total:
                next_url = numbered(page + 1)  # no Link (a proxy may strip it), but more to come
            else:
                return items, consistent
            if count == 0:
                return items, False  # an empty page that links onwards would loop for ever
        raise SourceError(f"{http.label}: more than {MAX_PAGES} pages of {noun}")

    seen: dict[K, V] = {}
    for attempt in range(LISTING_ATTEMPTS):
        items, consistent = await list_once()
        if consistent:
            return items
        seen.update(items)
        if attempt < LISTING_ATTEMPTS - 1:
            log.info("%s: %s changed during listing; listing again", http.label, noun)
    log.warning(
        "%s: %s kept changing during %d listings; using the union of what was seen",
        http.label,
        noun,
        LISTING_ATTEMPTS,
    )
    return seen
