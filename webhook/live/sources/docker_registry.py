"""Lists the spaces of a Docker Registry (CNCF Distribution): first path components, all public.

A Docker Registry has no projects, so a space is the first path component of a repository
name, as the design says: ``team-a/api`` and ``team-a/web`` make the space ``team-a``. A
repository with a single component (``alpine``) is its own space, ``alpine`` — that is also
what the decision engine derives from the image ``registry:5000/alpine``, whose path has no
``library/`` prefix outside Docker Hub. Every space is public: Distribution has no per-repo
visibility, and any account that may log in may pull everything.

The protocol, as Distribution 2.8 implements it:

1. ``GET /v2/`` — 200 means anonymous access; 401 carries a ``WWW-Authenticate`` challenge.
2. ``Basic realm=...`` (htpasswd): send the configured username and password.
   ``Bearer realm=...,service=...``: get a token from the realm with
   ``service`` and ``scope=registry:catalog:*`` (basic auth with the configured account),
   then send ``Authorization: Bearer <token>``. A 401 on the catalog with a new ``scope`` in
   its challenge gets one more token request for that scope.
3. ``GET /v2/_catalog?n=1000`` and the ``Link: </v2/_catalog?last=...&n=1000>; rel="next"``
   that follow, until a page comes without one. ``n`` above the registry's
   ``catalog.maxentries`` is a 400 ``PAGINATION_NUMBER_INVALID``; the source then falls back
   to the registry's default page size.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlencode

import httpx

from webhook.clients.credentials import load_credentials
from webhook.clients.distribution import (
    CATALOG_SCOPE,
    Challenge,
    RegistrySession,
    parse_challenge,
)
from webhook.clients.errors import SourceError
from webhook.clients.http import (
    RegistrySource,
    next_link,
    parse_json,
    request_path,
    same_origin_url,
)

__all__ = ["CATALOG_SCOPE", "Challenge", "DockerRegistrySource", "parse_challenge", "space_of"]

log = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 1000  # Distribution's default catalog.maxentries
_MAX_PAGES: Final = 100_000


def space_of(repository: str) -> str:
    """The space of a repository: its first path component (``alpine`` for ``alpine``)."""
    return repository.split("/", 1)[0]


class DockerRegistrySource(RegistrySource):
    """The spaces of one Docker Registry: first path component -> True (all public).

    Args:
        registry: the registry as declared in the config (``type: docker-registry``).
        client: an ``httpx.AsyncClient`` to use; left open on :meth:`aclose`.
        timeout: connect/read/write/pool timeouts; a number applies to every phase.
        retries: extra attempts per request after a connection error, timeout, 429 or 5xx.
        backoff: first retry delay in seconds, doubled per retry, with jitter.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one fails the fetch.
        page_size: catalog entries per page (``n``), 1..1000.
        sleep, rng: injectable for tests.
    """

    KIND = "docker-registry"
    MAX_PAGE_SIZE = MAX_PAGE_SIZE

    async def fetch(self) -> dict[str, bool]:
        """Every space in the catalog, each public.

        Raises:
            SourceError: the registry could not be listed; the message names the registry
                and is free of credentials and tokens.
        """
        creds = load_credentials(self._registry, self._label)
        session = RegistrySession(self._http, self._base, self._label, creds)
        await session.check_version()
        spaces: dict[str, bool] = {}
        url = f"{self._base}/v2/_catalog?{urlencode({'n': self._page_size})}"
        fallback_done = False
        for page in range(1, _MAX_PAGES + 1):
            what = f"GET {request_path(url)} (page {page})"
            response = await session.get(url, what)
            if response.status_code == 400 and not fallback_done and _pagination_invalid(response):
                # catalog.maxentries is below our n: let the registry pick its default size.
                log.info(
                    "%s: n=%d refused, using the default page size", self._label, self._page_size
                )
                fallback_done = True
                url = f"{self._base}/v2/_catalog"
                what = f"GET /v2/_catalog (page {page})"
                response = await session.get(url, what)
            if response.status_code != 200:
                raise session.status_error(response, what)
            body = parse_json(response, self._label, what)
            repositories = body.get("repositories") if isinstance(body, dict) else None
            if repositories is None and isinstance(body, dict):
                repositories = []  # a missing or null list: an empty page
            if not isinstance(repositories, list) or not all(
                isinstance(r, str) for r in repositories
            ):
                raise SourceError(
                    f'{self._label}: expected {{"repositories": [...]}} in the response to {what}'
                )
            for repository in repositories:
                if repository:
                    spaces[space_of(repository)] = True
            log.debug("%s: page %d: %d repositories", self._label, page, len(repositories))
            link = next_link(response)
            if link is None:
                return spaces
            next_url = same_origin_url(str(response.url), link, self._base, self._label)
            if not repositories or next_url == url:
                raise SourceError(f"{self._label}: the catalog's next link does not advance")
            url = next_url
        raise SourceError(f"{self._label}: more than {_MAX_PAGES} catalog pages")


def _pagination_invalid(response: httpx.Response) -> bool:
    return b"PAGINATION_NUMBER_INVALID" in response.content
