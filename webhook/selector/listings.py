"""Repositories and tags as the registries list them, with the registry's listing credential.

The selector never forwards the user's token to a registry: it lists with the registry's
``credentials`` (the account live mode lists spaces with), and shows a user only what
admission would let their namespace use (``webhook.selector.catalog`` decides that before
any call here is made).

Harbor (``/api/v2.0``, project-scoped, as the swagger describes them):

- ``GET /projects/{project}/repositories?page=&page_size=&sort=name[&q=name=~<text>]``: a
  page (:meth:`HarborListing.repositories_page`) or every page, following ``Link`` headers
  (:func:`~webhook.clients.harbor_paging.list_harbor`; at most 100 per page). Repository
  names include the project (``team-a/web``).
- ``GET /projects/{project}/repositories/{rest}/artifacts?with_tag=true&sort=-push_time``:
  a repository's artifacts with their tags, digests, push times and sizes. ``rest`` is the
  name after the project with ``/`` encoded *twice* (``a/b`` → ``a%252Fb``), as Harbor
  requires.

Docker Registry (Distribution's HTTP API v2):

- ``GET /v2/_catalog?n=&last=`` following ``Link``: every repository (a space is the first
  path component);
- ``GET /v2/<name>/tags/list?n=&last=`` following ``Link`` (Distribution 2.8 ignores ``n``
  and answers every tag at once);
- ``HEAD /v2/<name>/manifests/<tag>``: the tag's digest (``Docker-Content-Digest``), asked
  only for the tags of the page being shown. Push time and size are not in this API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

import httpx

from webhook.clients.credentials import load_credentials
from webhook.clients.distribution import CATALOG_SCOPE, RegistrySession
from webhook.clients.errors import SourceError
from webhook.clients.harbor_paging import list_harbor, total_count
from webhook.clients.http import (
    RegistrySource,
    error_detail,
    next_link,
    parse_json,
    request_path,
    same_origin_url,
)

__all__ = [
    "DistributionListing",
    "HarborListing",
    "NotFound",
    "Repository",
    "RepositoryPage",
    "Tag",
]

MANIFEST_TYPES: Final = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_MAX_PAGES: Final = 10_000
DIGEST_LOOKUPS: Final = 8  # concurrent HEAD requests for one page of tags


class NotFound(Exception):
    """The registry says the project or repository does not exist."""


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository: its full path (``team-a/web``), artifact count and last update."""

    name: str
    artifacts: int | None = None
    updated: str | None = None


@dataclass(frozen=True, slots=True)
class RepositoryPage:
    items: tuple[Repository, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag, with what the registry says of the image it points to."""

    name: str
    digest: str | None = None
    pushed: str | None = None
    size: int | None = None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HarborListing(RegistrySource):
    """Repositories and tags of one Harbor, project by project."""

    KIND = "harbor"

    def _auth(self) -> tuple[dict[str, str], tuple[str, ...]]:
        creds = load_credentials(self._registry, self._label)
        headers = {"Accept": "application/json"}
        if creds is None:
            return headers, ()
        headers["Authorization"] = creds.header
        return headers, creds.secrets

    def _error(self, response: httpx.Response, what: str, secrets: tuple[str, ...]) -> Exception:
        if response.status_code == 404:
            return NotFound(f"{self._label}: {what}: not found")
        return SourceError(f"{self._label}: {error_detail(response, secrets)} on {what}")

    def _repositories_url(self, project: str) -> str:
        return f"{self._base}/api/v2.0/projects/{quote(project, safe='')}/repositories"

    @staticmethod
    def _parse_repositories(items: object, what: str) -> dict[str, Repository]:
        if not isinstance(items, list):
            raise SourceError(f"expected a JSON array of repositories in the response to {what}")
        found: dict[str, Repository] = {}
        for item in items:
            name = _str(item.get("name")) if isinstance(item, dict) else None
            if name is None:
                raise SourceError(f"a repository without a name in the response to {what}")
            assert isinstance(item, dict)
            found[name] = Repository(
                name, _int(item.get("artifact_count")), _str(item.get("update_time"))
            )
        return found

    async def repositories_page(
        self, project: str, query: str, page: int, limit: int
    ) -> RepositoryPage:
        """One page of a project's repositories, sorted by name, filtered by ``query`` (a
        case-insensitive substring of the name, Harbor's ``name=~``)."""
        headers, secrets = self._auth()
        params = {"page": str(page), "page_size": str(limit), "sort": "name"}
        if query:
            params["q"] = f"name=~{query}"
        url = f"{self._repositories_url(project)}?{urlencode(params)}"
        what = f"GET {request_path(url)}"
        response = await self._http.get(url, what=what, headers=headers, secrets=secrets)
        if response.status_code != 200:
            raise self._error(response, what, secrets)
        found = self._parse_repositories(parse_json(response, self._label, what), what)
        total = total_count(response)
        return RepositoryPage(tuple(found.values()), len(found) if total is None else total)

    async def repositories(self, project: str) -> tuple[Repository, ...]:
        """Every repository of a project, sorted by name."""
        headers, secrets = self._auth()
        found = await list_harbor(
            self._http,
            self._repositories_url(project),
            params={"sort": "name"},
            page_size=self._page_size,
            headers=headers,
            secrets=secrets,
            parse_page=self._parse_repositories,
            status_error=lambda response, what: self._raise(response, what, secrets),
            noun="repositories",
        )
        return tuple(found[name] for name in sorted(found))

    def _raise(self, response: httpx.Response, what: str, secrets: tuple[str, ...]) -> SourceError:
        error = self._error(response, what, secrets)
        if isinstance(error, NotFound):
            raise error
        assert isinstance(error, SourceError)
        return error

    async def tags(self, repository: str) -> tuple[Tag, ...]:
        """Every tag of a repository (``project/rest``), newest push first."""
        project, _, rest = repository.partition("/")
        twice = quote(quote(rest, safe=""), safe="")
        url = f"{self._repositories_url(project)}/{twice}/artifacts"
        headers, secrets = self._auth()

        def artifacts(items: object, what: str) -> dict[str, list[Tag]]:
            if not isinstance(items, list):
                raise SourceError(f"expected a JSON array of artifacts in the response to {what}")
            found: dict[str, list[Tag]] = {}
            for item in items:
                if not isinstance(item, dict) or _str(item.get("digest")) is None:
                    raise SourceError(f"an artifact without a digest in the response to {what}")
                digest = str(item["digest"])
                found[digest] = [
                    Tag(
                        name,
                        digest,
                        _str(tag.get("push_time")) or _str(item.get("push_time")),
                        _int(item.get("size")),
                    )
                    for tag in item.get("tags") or ()
                    if isinstance(tag, dict) and (name := _str(tag.get("name"))) is not None
                ]
            return found

        found = await list_harbor(
            self._http,
            url,
            params={"with_tag": "true", "sort": "-push_time"},
            page_size=self._page_size,
            headers=headers,
            secrets=secrets,
            parse_page=artifacts,
            status_error=lambda response, what: self._raise(response, what, secrets),
            noun="artifacts",
        )
        tags = [tag for group in found.values() for tag in group]
        tags.sort(key=lambda t: (t.pushed or "", t.name), reverse=True)
        return tuple(tags)


class DistributionListing(RegistrySource):
    """Repositories and tags of one Docker Registry."""

    KIND = "docker-registry"
    MAX_PAGE_SIZE = 1000

    def _session(self) -> RegistrySession:
        creds = load_credentials(self._registry, self._label)
        return RegistrySession(self._http, self._base, self._label, creds)

    async def _pages(self, session: RegistrySession, first: str, key: str, scope: str) -> list[str]:
        """Every string of ``key`` in the pages starting at ``first``, following ``Link``."""
        url, found = first, []
        for page in range(1, _MAX_PAGES + 1):
            what = f"GET {request_path(url)} (page {page})"
            response = await session.get(url, what, scope)
            if response.status_code == 404:
                raise NotFound(f"{self._label}: {what}: not found")
            if response.status_code != 200:
                raise session.status_error(response, what, scope)
            body = parse_json(response, self._label, what)
            items = body.get(key) if isinstance(body, dict) else None
            if items is None and isinstance(body, dict):
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise SourceError(
                    f'{self._label}: expected {{"{key}": [...]}} in the response to {what}'
                )
            found.extend(items)
            link = next_link(response)
            if link is None:
                return found
            following = same_origin_url(str(response.url), link, self._base, self._label)
            if not items or following == url:
                raise SourceError(f"{self._label}: the next link of {what} does not advance")
            url = following
        raise SourceError(f"{self._label}: more than {_MAX_PAGES} pages")

    async def catalog(self) -> tuple[str, ...]:
        """Every repository of the registry, sorted."""
        session = self._session()
        first = f"{self._base}/v2/_catalog?{urlencode({'n': self._page_size})}"
        return tuple(sorted(set(await self._pages(session, first, "repositories", CATALOG_SCOPE))))

    async def tags(self, repository: str) -> tuple[str, ...]:
        """Every tag name of a repository, as the registry orders them."""
        session = self._session()
        first = f"{self._base}/v2/{repository}/tags/list?{urlencode({'n': self._page_size})}"
        return tuple(await self._pages(session, first, "tags", f"repository:{repository}:pull"))

    async def digests(self, repository: str, tags: tuple[str, ...]) -> dict[str, str | None]:
        """The digest of each tag (``HEAD`` of its manifest), a few at a time."""
        session = self._session()
        session.accept = MANIFEST_TYPES
        slots = asyncio.Semaphore(DIGEST_LOOKUPS)
        scope = f"repository:{repository}:pull"

        async def one(tag: str) -> tuple[str, str | None]:
            url = f"{self._base}/v2/{repository}/manifests/{quote(tag, safe='')}"
            async with slots:
                response = await session.get(url, f"HEAD {request_path(url)}", scope, "HEAD")
            if response.status_code != 200:
                return tag, None
            return tag, response.headers.get("docker-content-digest") or None

        return dict(await asyncio.gather(*(one(tag) for tag in tags)))
