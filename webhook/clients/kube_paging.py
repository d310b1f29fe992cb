"""Paged lists of the Kubernetes API, read as raw JSON: the one loop over ``continue``.

Everything spacegate lists from the apiserver (namespaces, Secrets, workloads and Pods,
policy reports) is listed a page at a time (``limit``, then the ``continue`` token of each
page until a page comes without one). Pages are plain JSON, not the official client's
models: 10,000 Pods as models cost far more memory and time than the few fields spacegate
reads, and tenants write these objects, so reading them as data (never as code or classes)
is also the safe choice.

Memory follows bytes, not object counts. Tenants decide how large their objects are (up
to about 1.5 MiB each in etcd, some 3 MiB as JSON), so :func:`list_items` bounds a page by
size: its first page asks for as many objects as :data:`PAGE_BYTES` holds at the largest
size, each later one for as many as it holds at the average size of the page before
(:data:`PAGE_SIZE` at most). And a page is never held whole: its JSON is parsed as it
streams in (``ijson``, whose C parser builds each item) and each item is handed on as soon
as it is complete, so what one list costs in memory is about one object, whatever the page.
The ``continue`` token is read by the same streaming parse at its place in the page (a
custom resource's list has it after the items): a tenant's object that carries a
``"continue"`` key of its own cannot stand in for it.

:func:`pages` is the loop itself, for a caller that fetches a page its own way (the
namespace reflector, which must be able to interrupt a blocked read); :func:`list_items`
is the common case: every item of a list through an ``ApiClient``'s connection and
credentials. The calls block (the official client is synchronous); callers run them in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import ijson
import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["PAGE_BYTES", "PAGE_SIZE", "Page", "get", "get_json", "list_items", "pages"]

# The most objects one page asks for.
PAGE_SIZE: Final = 500
# The JSON one page should stay under (for objects the size of those in the page before).
PAGE_BYTES: Final = 8 * 1024 * 1024
# The JSON of the largest object etcd stores (1.5 MiB of protobuf, about twice that as JSON).
LARGEST_OBJECT_BYTES: Final = 3 * 1024 * 1024
# Read this much of a streamed page at a time.
_READ_BYTES: Final = 64 * 1024
# An error's Status body is small; read no more of it than this.
_ERROR_BYTES: Final = 64 * 1024

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
        raise _refusal(status, path, data)
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


def _refusal(status: int, path: str, data: bytes) -> ApiException:
    refused = ApiException(status=status, reason=f"GET {path}")
    refused.body = data.decode("utf-8", "replace")  # describe_api_error quotes its message
    return refused


class _StreamedPage:
    """One page of a list, parsed as it streams in: :meth:`items` yields each item once
    it is complete; afterwards :attr:`token` is the page's ``continue`` token (None on the
    last page) and :attr:`size` its bytes."""

    def __init__(
        self, api: client.ApiClient, path: str, query: Query, timeout: float | None = None
    ) -> None:
        method, url, headers, body, post = api.param_serialize(
            "GET",
            path,
            query_params=list(query),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        self._path = path
        # kubernetes' REST client asks urllib3 not to preload the body: it can be streamed.
        # A timeout only when asked for: the client's default otherwise (None is "no timeout").
        options: dict[str, Any] = {} if timeout is None else {"_request_timeout": timeout}
        self._response: Any = api.call_api(method, url, headers, body, post, **options).response
        self.token: str | None = None
        self.size = 0

    def items(self) -> Iterator[dict[str, Any]]:
        response = self._response
        try:
            if response.status != 200:
                raise _refusal(int(response.status), self._path, response.read(_ERROR_BYTES))
            items: Any = ijson.sendable_list()
            tokens: Any = ijson.sendable_list()
            item_parser = ijson.items_coro(items, "items.item", use_float=True)
            token_parser = ijson.items_coro(tokens, "metadata.continue")
            for data in response.stream(_READ_BYTES, decode_content=True):
                self.size += len(data)
                item_parser.send(data)
                token_parser.send(data)
                yield from items
                items.clear()
            item_parser.close()
            token_parser.close()
            yield from items
            self.token = tokens[0] if tokens and isinstance(tokens[0], str) and tokens[0] else None
        except ijson.JSONError as error:
            raise ApiException(status=200, reason=f"GET {self._path}: {error}") from None
        finally:
            response.release_conn()


def list_items(
    api: client.ApiClient,
    path: str,
    query: Query = (),
    *,
    page_size: int = PAGE_SIZE,
    page_bytes: int = PAGE_BYTES,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of the list at ``path`` (``query``: selectors), about one object in memory
    at a time, pages sized to stay under ``page_bytes`` (module doc) and ``page_size``
    items; ``timeout`` bounds the connect and each read of every page (None: the client's
    default). An expired ``continue`` token (410) is the caller's to handle: a fresh list."""
    limit = max(1, min(page_size, page_bytes // LARGEST_OBJECT_BYTES))
    token: str | None = None
    while True:
        paging: list[tuple[str, Any]] = [("limit", limit)]
        if token:
            paging.append(("continue", token))
        page = _StreamedPage(api, path, [*query, *paging], timeout)
        count = 0
        for item in page.items():
            count += 1
            yield item
        token = page.token
        if not token:
            return
        per_object = max(1, page.size // max(1, count))
        limit = max(1, min(page_size, page_bytes // per_object))
