"""Lists the projects of a Harbor instance: Harbor's spaces, each public or private.

Harbor answers ``GET /api/v2.0/projects`` a page at a time (at most 100 per page) with the
total in ``X-Total-Count`` and the next page in a ``Link: <...>; rel="next"`` header; this
source follows those until the listing is complete. ``metadata.public`` is the *string*
``"true"`` or ``"false"``. Proxy-cache projects (``registry_id`` set) are spaces like any
other: their visibility follows ``metadata.public`` too.

What the listing contains depends on the account (Harbor's ``ListProjects`` handler):

- a system admin, or a system-level robot account with ``project:list``
  (``robot$lister``), sees every project — use one of these;
- a plain user or a project-level robot sees public projects plus its own, so private
  projects it is not a member of would be missing (and their images denied as unknown);
- with no credentials at all (anonymous), Harbor shows **public projects only**. That is a
  valid setup for a registry whose private projects are not meant to be used from the
  cluster: their images are then refused as unknown spaces.

Harbor treats *wrong* credentials like none at all on this endpoint (200, public projects
only). So when credentials are configured, the source first asks
``/api/v2.0/users/current/permissions``, which answers 401 to an unauthenticated caller,
and fails with that 401 instead of silently losing the private projects.

Paging (``Link`` headers, ``X-Total-Count``, listing again when the total changes midway)
is Harbor's, and written once in :func:`webhook.clients.harbor_paging.list_harbor`; a
registry that keeps changing yields the union of what was seen, which errs towards keeping
a space rather than dropping one.
"""

from __future__ import annotations

from typing import Final

import httpx

from webhook.clients.credentials import load_credentials
from webhook.clients.errors import SourceError
from webhook.clients.harbor_paging import MAX_PAGE_SIZE, list_harbor
from webhook.clients.http import RegistrySource, error_detail, safe_text

__all__ = ["PROJECTS_PATH", "HarborSource"]

PROJECTS_PATH: Final = "/api/v2.0/projects"
PERMISSIONS_PATH: Final = "/api/v2.0/users/current/permissions"


class HarborSource(RegistrySource):
    """The spaces of one Harbor registry: project name -> public.

    Args:
        registry: the registry as declared in the config (``type: harbor``).
        client: an ``httpx.AsyncClient`` to use (tests, shared pools); left open on
            :meth:`aclose`. By default one is created and owned here.
        timeout: connect/read/write/pool timeouts; a number applies to every phase; by
            default :data:`~webhook.clients.http.DEFAULT_TIMEOUT` (or the given client's).
        retries: extra attempts per request after a connection error, timeout, 429 or 5xx.
        backoff: first retry delay in seconds, doubled per retry (up to ``max_backoff``),
            with jitter.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one fails the fetch.
        page_size: projects per page, 1..100.
        sleep, rng: injectable for tests (no real waiting, deterministic jitter).

    With the defaults, refused connections and 5xx fail a fetch after about 3.5 s of
    backoff; a registry that accepts connections but never answers costs up to four read
    timeouts (40 s), so the caller's own bound on a fetch (the refresher's fetch timeout)
    is what ends that case.
    """

    KIND = "harbor"
    MAX_PAGE_SIZE = MAX_PAGE_SIZE

    async def fetch(self) -> dict[str, bool]:
        """Every project visible to the configured account, name -> public.

        Raises:
            SourceError: the registry could not be listed; the message names the registry
                and is free of credentials.
        """
        creds = load_credentials(self._registry, self._label)
        headers = {"Accept": "application/json"}
        secrets: tuple[str, ...] = ()
        if creds is not None:
            headers["Authorization"] = creds.header
            secrets = creds.secrets
            await self._check_credentials(headers, secrets)
        return await list_harbor(
            self._http,
            f"{self._base}{PROJECTS_PATH}",
            params={"with_detail": "false"},
            page_size=self._page_size,
            headers=headers,
            secrets=secrets,
            parse_page=self._projects,
            status_error=lambda response, what: self._status_error(response, what, secrets),
            noun="projects",
        )

    async def _check_credentials(self, headers: dict[str, str], secrets: tuple[str, ...]) -> None:
        """Fail with 401 when Harbor did not accept the credentials.

        Harbor does not reject wrong basic credentials on ``/projects``: its security
        middleware falls back to the anonymous context, and the listing silently shrinks to
        public projects (so every private space would vanish from the snapshot).
        ``/users/current/permissions`` requires an authenticated principal, works for users
        and robot accounts alike, and answers 401 when the credentials were not accepted.
        """
        url = f"{self._base}{PERMISSIONS_PATH}"
        what = f"GET {PERMISSIONS_PATH}"
        response = await self._http.get(url, what=what, headers=headers, secrets=secrets)
        if response.status_code != 200:
            raise self._status_error(response, what, secrets)

    def _projects(self, items: object, what: str) -> dict[str, bool]:
        """One page's projects, name -> public."""
        if not isinstance(items, list):
            raise SourceError(
                f"{self._label}: expected a JSON array of projects in the response to {what}, "
                f"got {type(items).__name__}"
            )
        projects: dict[str, bool] = {}
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                raise SourceError(
                    f"{self._label}: project #{index} in the response to {what} has no name"
                )
            metadata = item.get("metadata") if isinstance(item, dict) else None
            public = metadata.get("public") if isinstance(metadata, dict) else None
            # "true"/"false" per the swagger; a missing value is taken as private, the
            # answer that never lets an image through by mistake.
            projects[name] = public is True or (
                isinstance(public, str) and public.strip().lower() == "true"
            )
        return projects

    def _status_error(
        self, response: httpx.Response, what: str, secrets: tuple[str, ...]
    ) -> SourceError:
        detail = error_detail(response, secrets)
        status = response.status_code
        if status in (401, 403):
            return SourceError(f"{self._label}: {detail}")
        if 300 <= status < 400:
            target = safe_text(response.headers.get("location", "?"), secrets, 200)
            return SourceError(
                f"{self._label}: {detail} on {what}, redirected to {target}; "
                "put the final URL in the config"
            )
        return SourceError(f"{self._label}: {detail} on {what}")
