"""What a namespace may deploy, down to repositories and tags: the selector's answers.

The spaces come from :func:`policy.visibility.visible_spaces`, which judges each space with
the rule admission decides with (``policy.rules.space_verdict``), so the selector offers
exactly what ``decide`` admits. Repositories and tags are listed only for those spaces: a
space, repository or tag the namespace may not use is answered exactly like one that does
not exist (:class:`NotVisible`, one message shape for both), decided from the snapshot
alone — the registry is never asked about a space the namespace cannot see, so neither the
answer nor its timing tells a tenant what another tenant's private space holds.

Listings are cached (``webhook.selector.cache``): a space's whole repository list and a
repository's tags for :data:`LISTING_TTL`. A page asked for before its space's list is cached
is fetched as that one page from Harbor (as fast as the registry answers it) while the whole
list is fetched in the background for the pages that follow.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from policy.config import Registry
from policy.snapshot import Snapshot
from policy.visibility import VisibleSpace, workspace_spaces
from webhook.clients.errors import SourceError
from webhook.selector.cache import Cached, ListingCache
from webhook.selector.listings import (
    DistributionListing,
    HarborListing,
    NotFound,
    Repository,
    RepositoryPage,
    Tag,
)
from webhook.selector.names import BadRequest, Paging, valid_digest, valid_repository, valid_tag

__all__ = ["LISTING_TTL", "Catalog", "NotVisible"]

log = logging.getLogger(__name__)

LISTING_TTL: Final = 60.0
MAX_MERGED_SPACES: Final = 20
# Repository names are lower-case [a-z0-9._/-]; a search for anything else matches nothing.
_SEARCHABLE = re.compile(r"[a-z0-9._/-]*")


class NotVisible(LookupError):
    """Not found for this namespace: absent, or not usable there (indistinguishable)."""


@dataclass(frozen=True, slots=True)
class _Client:
    registry: Registry
    listing: HarborListing | DistributionListing


def _repositories_size(value: tuple[Repository, ...]) -> int:
    return 64 + sum(96 + len(r.name) for r in value)


def _tags_size(value: tuple[Tag, ...] | tuple[str, ...] | None) -> int:
    return 64 + sum(160 + len(t if isinstance(t, str) else t.name) for t in value or ())


class Catalog:
    """The selector's data: spaces from the snapshot, repositories and tags from registries.

    ``snapshot`` returns the snapshot now (it is swapped as live mode refreshes).
    ``listing_for`` makes a registry's listing client (tests inject fakes' clients).
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        ttl: float = LISTING_TTL,
        listing_for: Callable[[Registry], HarborListing | DistributionListing] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._listing_for = listing_for or _default_listing
        self._clients: dict[str, _Client] = {}
        self.repositories_cache: ListingCache[tuple[Repository, ...]] = ListingCache(
            ttl=ttl, sizeof=_repositories_size
        )
        self.pages_cache: ListingCache[RepositoryPage] = ListingCache(
            ttl=ttl, sizeof=lambda p: _repositories_size(p.items)
        )
        self.tags_cache: ListingCache[Any] = ListingCache(ttl=ttl, sizeof=_tags_size)
        self.digests_cache: ListingCache[str | None] = ListingCache(
            ttl=ttl, sizeof=lambda _d: 160, max_entries=16_384
        )
        self._background: set[asyncio.Task[object]] = set()
        # Visible spaces per workspace, for the snapshot they were computed from (a Harbor
        # of 10,000 projects makes them worth keeping between requests).
        self._spaces_of: tuple[Snapshot | None, dict[str | None, list[VisibleSpace]]] = (None, {})

    # ------------------------------------------------------------------ spaces

    def _namespace(self, snapshot: Snapshot, namespace: str) -> None:
        if namespace not in snapshot.namespaces:
            raise NotVisible(f'namespace "{namespace}" not found')

    def _usable(self, snapshot: Snapshot, namespace: str) -> list[VisibleSpace]:
        """``visible_spaces`` of the namespace, remembered per workspace and snapshot."""
        workspace = snapshot.namespace(namespace).workspace
        known, memo = self._spaces_of
        if known is not snapshot:
            memo = {}
            self._spaces_of = (snapshot, memo)
        found = memo.get(workspace)
        if found is None:
            if len(memo) >= 1024:
                memo.clear()
            found = memo[workspace] = workspace_spaces(snapshot, workspace)
        return found

    def spaces(self, namespace: str) -> dict[str, Any]:
        snapshot = self._snapshot()
        self._namespace(snapshot, namespace)
        workspace = snapshot.namespace(namespace).workspace
        return {
            "namespace": namespace,
            "workspace": workspace,
            "pullSecret": snapshot.policy.pull_secret_name,
            "items": [self._space_json(s, workspace) for s in self._usable(snapshot, namespace)],
        }

    @staticmethod
    def _space_json(space: VisibleSpace, workspace: str | None) -> dict[str, Any]:
        return {
            "registry": space.registry,
            "host": space.host,
            "space": space.space,
            "visibility": "public" if space.public else "private",
            "needsPullSecret": space.needs_secret,
            "why": space.why(workspace),
        }

    def _visible(
        self, snapshot: Snapshot, namespace: str, registry: str | None, space: str | None
    ) -> list[VisibleSpace]:
        """The visible spaces a request names (all when it names none)."""
        self._namespace(snapshot, namespace)
        found = [
            s
            for s in self._usable(snapshot, namespace)
            if (registry is None or s.registry == registry)
            and (space is None or s.space in (space, "*"))
        ]
        if not found and (registry is not None or space is not None):
            what = f'space "{space}"' if space is not None else "spaces"
            where = f' of registry "{registry}"' if registry is not None else ""
            raise NotVisible(f'{what}{where} not found for namespace "{namespace}"')
        return found

    # ------------------------------------------------------------------ repositories

    async def repositories(
        self,
        namespace: str,
        *,
        registry: str | None,
        space: str | None,
        query: str,
        paging: Paging,
    ) -> dict[str, Any]:
        snapshot = self._snapshot()
        spaces = self._visible(snapshot, namespace, registry, space)
        query = query.lower()
        if not _SEARCHABLE.fullmatch(query):
            spaces = []  # no repository name contains such characters: nothing to ask
        if len(spaces) > MAX_MERGED_SPACES:
            raise BadRequest(
                f"{len(spaces)} spaces are visible; name one with space= (and registry=)"
            )
        stale: list[Cached[Any]] = []
        rows: list[tuple[VisibleSpace, Repository]] = []
        total: int | None = None
        listed: list[tuple[VisibleSpace, tuple[Repository, ...]]] = []
        if len(spaces) == 1 and space is not None:
            only = spaces[0]
            served = await self._one_space_page(only, space, query, paging)
            stale.append(served)
            if isinstance(served.value, RepositoryPage):
                rows = [(only, r) for r in served.value.items]
                total = served.value.total
            else:
                listed.append((only, served.value))
        else:
            for visible in spaces:
                served = await self._all_repositories(visible)
                stale.append(served)
                listed.append((visible, served.value))
        if total is None:
            exact = len(listed) == 1 and listed[0][0].space == space and not query
            if exact:  # one project's own list (the common page): no need to filter it
                only, value = listed[0]
                total = len(value)
                rows = [(only, r) for r in value[paging.start : paging.start + paging.limit]]
            else:
                rows = [
                    (s, r)
                    for s, value in listed
                    for r in value
                    if self._in_space(s, r) and (not query or query in r.name)
                ]
                total = len(rows)
                rows = rows[paging.start : paging.start + paging.limit]
        return {
            "namespace": namespace,
            "page": paging.page,
            "limit": paging.limit,
            "total": total,
            **self._freshness(stale),
            "items": [self._repository_json(s, r) for s, r in rows],
        }

    @staticmethod
    def _in_space(space: VisibleSpace, repository: Repository) -> bool:
        return space.space == "*" or repository.name.split("/", 1)[0] == space.space

    async def _one_space_page(
        self, visible: VisibleSpace, space: str, query: str, paging: Paging
    ) -> Cached[Any]:
        """One space's page: from its cached list, else one page from Harbor now (and the
        whole list fetched in the background for the next pages)."""
        key = ("repositories", visible.registry, visible.space)
        cached = self.repositories_cache.peek(key)
        if cached is not None:
            return cached
        client = self._client(visible.registry)
        if not isinstance(client.listing, HarborListing):
            return await self._all_repositories(visible)
        listing = client.listing
        page_key = (visible.registry, space, query, paging.page, paging.limit)
        try:
            page = await self.pages_cache.get(
                page_key,
                lambda: _valid_page(
                    listing.repositories_page(space, query, paging.page, paging.limit)
                ),
            )
            # The whole list next, for the pages and searches that follow: after this page,
            # so that the two never compete at the registry.
            self._warm(visible)
            return page
        except NotFound:
            raise NotVisible(
                f'space "{space}" of registry "{visible.registry}" not found'
            ) from None
        except SourceError as exc:
            fallback = self.repositories_cache.last(key, str(exc))
            if fallback is None:
                raise
            return fallback

    def _warm(self, visible: VisibleSpace) -> None:
        self._in_background(self._quietly(self._all_repositories(visible)))

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quietly(work: Any) -> object:
        try:
            return await work
        except (SourceError, NotFound):
            return None

    async def _all_repositories(self, visible: VisibleSpace) -> Cached[tuple[Repository, ...]]:
        client = self._client(visible.registry)
        listing = client.listing
        if isinstance(listing, HarborListing):
            key = ("repositories", visible.registry, visible.space)

            async def fetch() -> tuple[Repository, ...]:
                listed = await listing.repositories(visible.space)
                return tuple(r for r in listed if valid_repository(r.name))

        else:
            key = ("repositories", visible.registry, "*")

            async def fetch() -> tuple[Repository, ...]:
                names = await listing.catalog()
                return tuple(Repository(name) for name in names if valid_repository(name))

        try:
            return await self.repositories_cache.get(key, fetch)
        except NotFound:
            raise NotVisible(
                f'space "{visible.space}" of registry "{visible.registry}" not found'
            ) from None

    def _repository_json(self, space: VisibleSpace, repository: Repository) -> dict[str, Any]:
        return {
            "registry": space.registry,
            "space": repository.name.split("/", 1)[0],
            "name": repository.name,
            "image": f"{space.host}/{repository.name}",
            "artifactCount": repository.artifacts,
            "updated": repository.updated,
            "needsPullSecret": space.needs_secret,
        }

    # ------------------------------------------------------------------ tags

    async def tags(
        self, namespace: str, *, registry: str, repository: str, paging: Paging
    ) -> dict[str, Any]:
        snapshot = self._snapshot()
        space_name = repository.split("/", 1)[0]
        self._namespace(snapshot, namespace)
        missing = NotVisible(
            f'repository "{repository}" of registry "{registry}" not found for namespace '
            f'"{namespace}"'
        )
        try:
            visible = self._visible(snapshot, namespace, registry, space_name)[0]
        except (NotVisible, IndexError):
            raise missing from None
        listing = self._client(registry).listing
        known = self.repositories_cache.peek(
            ("repositories", registry, visible.space if isinstance(listing, HarborListing) else "*")
        )
        if known is not None and all(r.name != repository for r in known.value):
            raise missing  # the space's list is fresh and does not have it: Harbor not asked

        async def fetch() -> Any:
            try:
                return await listing.tags(repository)
            except NotFound:
                return None  # remembered like a listing, so asking again costs no call

        served: Cached[Any] = await self.tags_cache.get(("tags", registry, repository), fetch)
        if served.value is None:
            raise missing
        listed = [t for t in served.value if valid_tag(t if isinstance(t, str) else t.name)]
        total = len(listed)
        chosen = tuple(listed[paging.start : paging.start + paging.limit])
        if isinstance(listing, DistributionListing):
            chosen = await self._with_digests(listing, registry, repository, chosen)
        image = f"{visible.host}/{repository}"
        return {
            "namespace": namespace,
            "registry": registry,
            "repository": repository,
            "image": image,
            "needsPullSecret": visible.needs_secret,
            "pullSecret": snapshot.policy.pull_secret_name if visible.needs_secret else None,
            "page": paging.page,
            "limit": paging.limit,
            "total": total,
            **self._freshness([served]),
            "items": [
                {
                    "name": tag.name,
                    "digest": tag.digest if valid_digest(tag.digest) else None,
                    "pushed": tag.pushed,
                    "size": tag.size,
                    "reference": f"{image}:{tag.name}",
                    "digestReference": (
                        f"{image}@{tag.digest}" if valid_digest(tag.digest) else None
                    ),
                }
                for tag in chosen
            ],
        }

    async def _with_digests(
        self,
        listing: DistributionListing,
        registry: str,
        repository: str,
        names: tuple[str, ...],
    ) -> tuple[Tag, ...]:
        digests: dict[str, str | None] = {}
        missing = []
        for name in names:
            hit = self.digests_cache.peek((registry, repository, name))
            if hit is None:
                missing.append(name)
            else:
                digests[name] = hit.value
        if missing:
            try:
                fetched = await listing.digests(repository, tuple(missing))
            except SourceError as exc:
                log.warning("%s", exc)
                fetched = dict.fromkeys(missing)
            for name, digest in fetched.items():
                digests[name] = digest
                if digest is not None:
                    await self.digests_cache.get((registry, repository, name), _value(digest))
        return tuple(Tag(name, digests.get(name)) for name in names)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _freshness(served: list[Cached[Any]]) -> dict[str, Any]:
        stale = [s for s in served if s.stale]
        age = max((s.age for s in served), default=0.0)
        return {
            "stale": bool(stale),
            "ageSeconds": round(age, 1),
            "error": stale[0].error if stale else None,
        }

    def _client(self, name: str) -> _Client:
        snapshot = self._snapshot()
        registry = snapshot.registries[name].registry
        client = self._clients.get(name)
        if client is None or client.registry != registry:
            if client is not None:  # the config changed: the old client's connections go
                self._in_background(client.listing.aclose())
            client = _Client(registry, self._listing_for(registry))
            self._clients[name] = client
        return client

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        for client in self._clients.values():
            await client.listing.aclose()


def _value(value: str) -> Callable[[], Awaitable[str | None]]:
    async def known() -> str | None:
        return value

    return known


async def _valid_page(fetch: Awaitable[RepositoryPage]) -> RepositoryPage:
    """A page without the repositories whose names are not repository names (hostile or
    broken registry data never reaches a page)."""
    page = await fetch
    return RepositoryPage(tuple(r for r in page.items if valid_repository(r.name)), page.total)


def _default_listing(registry: Registry) -> HarborListing | DistributionListing:
    if registry.type == "harbor":
        return HarborListing(registry, retries=1)
    return DistributionListing(registry, retries=1)
