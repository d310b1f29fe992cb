"""Paged lists of the Kubernetes API, read as raw JSON: the one loop over ``continue``.

Everything spacegate lists from the apiserver (namespaces, Secrets, workloads and Pods,
policy reports) is listed a page at a time (``limit``, then the ``continue`` token of each
page until a page comes without one), so one page is in memory at a time whatever the size
of the cluster. Pages are plain JSON, not the official client's models: 10,000 Pods as
models cost far more memory and time than the few fields spacegate reads, and tenants
write these objects, so reading them as data (never as code or classes) is also the safe
choice.

:func:`pages` is the loop itself, for a caller that fetches a page its own way (the
namespace reflector, which must be able to interrupt a blocked read); :func:`list_items`
is the common case: every item of a list through an ``ApiClient``'s connection and
credentials. The calls block (the official client is synchronous); callers run them in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["PAGE_SIZE", "Page", "get", "get_json", "list_items", "pages"]

PAGE_SIZE = 500

Page = dict[str, Any]
Query = Sequence[tuple[str, Any]]


def get(
    api: client.ApiClient, path: str, query: Query = (), *, timeout: float | None = None
) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` through the client's connection and credentials;
    ``timeout`` bounds the connect and each read (seconds; None: the client's default)."""
    method, url, headers, body, post = api.param_serialize(
        "GET",
        path,
        query_params=list(query),
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post, _request_timeout=timeout)
    data: bytes = response.read()  # type: ignore[no-untyped-call]
    return int(response.status), data


def get_json(
    api: client.ApiClient, path: str, query: Query = (), *, timeout: float | None = None
) -> Page:
    """The JSON object ``GET path`` answers; ``ApiException`` for any status but 200."""
    status, data = get(api, path, query, timeout=timeout)
    if status != 200:
        refused = ApiException(status=status, reason=f"GET {path}")
        # The apiserver's Status: describe_api_error quotes its message.
        refused.body = data.decode("utf-8", "replace")
        raise refused
    page = orjson.loads(data)
    if not isinstance(page, dict):
        raise ApiException(status=status, reason=f"GET {path}: not a JSON object")
    return page


def pages(fetch: Callable[[str | None], Page]) -> Iterator[Page]:
    """Every page of a list: ``fetch(None)`` first, then ``fetch(token)`` with the
    ``metadata.continue`` of the page before, until a page has none."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield page
        token = (page.get("metadata") or {}).get("continue") or None
        if not token:
            return


def list_items(
    api: client.ApiClient,
    path: str,
    query: Query = (),
    *,
    page_size: int = PAGE_SIZE,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of the list at ``path`` (``query``: selectors), one page in memory at a
    time. An expired ``continue`` token (410) is the caller's to handle: a fresh list."""

    def fetch(token: str | None) -> Page:
        paging: list[tuple[str, Any]] = [("limit", page_size)]
        if token:
            paging.append(("continue", token))
        return get_json(api, path, [*query, *paging], timeout=timeout)

    for page in pages(fetch):
        yield from page.get("items") or []
