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
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from webhook.clients.credentials import BasicCredentials, load_credentials
from webhook.clients.errors import SourceError
from webhook.clients.http import (
    HttpClient,
    RegistrySource,
    error_detail,
    next_link,
    parse_json,
    request_path,
    safe_text,
    same_origin_url,
)

__all__ = ["CATALOG_SCOPE", "Challenge", "DockerRegistrySource", "parse_challenge", "space_of"]

log = logging.getLogger(__name__)

CATALOG_SCOPE: Final = "registry:catalog:*"
MAX_PAGE_SIZE: Final = 1000  # Distribution's default catalog.maxentries
_MAX_PAGES: Final = 100_000


def space_of(repository: str) -> str:
    """The space of a repository: its first path component (``alpine`` for ``alpine``)."""
    return repository.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str]


_CHALLENGE_START = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*")
_AUTH_PARAM = re.compile(
    r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?'
)


def parse_challenge(value: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` value, or ``None`` if there is none.

    Quoted values may contain commas (``scope="repository:a/b:pull,push"``), so this is a
    small tokenizer rather than a split on ``,``.
    """
    start = _CHALLENGE_START.match(value)
    if start is None:
        return None
    params: dict[str, str] = {}
    pos = start.end()
    while pos < len(value):
        match = _AUTH_PARAM.match(value, pos)
        if match is None or match.end() == pos:
            break
        quoted, bare = match.group(2), match.group(3)
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params.setdefault(match.group(1).lower(), text)
        pos = match.end()
    return Challenge(start.group(1).lower(), params)


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
        session = _Session(self._http, self._base, self._label, creds)
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


class _Session:
    """The authorization state of one fetch: none, basic, or a bearer token."""

    def __init__(
        self, http: HttpClient, base: str, label: str, creds: BasicCredentials | None
    ) -> None:
        self.http = http
        self.base = base
        self.label = label
        self.creds = creds
        self.authorization: str | None = None
        self.secrets: list[str] = list(creds.secrets) if creds else []
        self.token_scopes: set[str] = set()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers

    async def _send(self, url: str, what: str) -> httpx.Response:
        return await self.http.get(url, what=what, headers=self._headers(), secrets=self.secrets)

    async def check_version(self) -> None:
        """``GET /v2/``: confirm the API and learn how to authenticate."""
        what = "GET /v2/"
        response = await self._send(f"{self.base}/v2/", what)
        if response.status_code == 401:
            await self._answer(response, CATALOG_SCOPE, what)
            response = await self._send(f"{self.base}/v2/", what)
        if response.status_code == 404:
            raise SourceError(
                f"{self.label}: {what} answered 404: not a Docker Registry HTTP API v2 endpoint"
            )
        if response.status_code != 200:
            raise self.status_error(response, what)

    async def get(self, url: str, what: str) -> httpx.Response:
        """GET with the current authorization, answering one fresh challenge if needed."""
        response = await self._send(url, what)
        if response.status_code == 401 and await self._answer(
            response, CATALOG_SCOPE, what, again=True
        ):
            response = await self._send(url, what)
        return response

    async def _answer(
        self, response: httpx.Response, default_scope: str, what: str, *, again: bool = False
    ) -> bool:
        """Set up authorization for a 401's challenge; False if nothing new can be tried."""
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            if again:
                return False
            raise self.status_error(response, what)
        if challenge.scheme == "basic":
            if self.creds is None:
                raise SourceError(
                    f"{self.label}: {error_detail(response, self.secrets)}; the registry "
                    "requires credentials (set credentials.usernameFile and passwordFile)"
                )
            if self.authorization == self.creds.header:
                return False  # already sent: the credentials were refused
            self.authorization = self.creds.header
            return True
        if challenge.scheme == "bearer":
            scope = challenge.params.get("scope") or default_scope
            if scope in self.token_scopes:
                return False  # a token for this scope was already refused
            await self._fetch_token(challenge, scope)
            return True
        raise SourceError(
            f"{self.label}: unsupported authentication scheme {challenge.scheme!r} on {what}"
        )

    async def _fetch_token(self, challenge: Challenge, scope: str) -> None:
        realm = challenge.params.get("realm")
        if not realm:
            raise SourceError(f"{self.label}: Bearer challenge without a realm")
        realm_url = urljoin(self.base + "/", realm)
        realm_parts = urlsplit(realm_url)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.hostname:
            raise SourceError(f"{self.label}: unusable token realm {safe_text(realm, (), 120)}")
        if urlsplit(self.base).scheme == "https" and realm_parts.scheme != "https":
            # Sending the password over plain HTTP because a server said so is a downgrade.
            raise SourceError(
                f"{self.label}: refusing a plain-http token realm for an https registry"
            )
        query = {"scope": scope}
        if "service" in challenge.params:
            query = {"service": challenge.params["service"], "scope": scope}
        separator = "&" if realm_parts.query else "?"
        url = f"{realm_url}{separator}{urlencode(query)}"
        where = f"{realm_parts.hostname}{realm_parts.path}"
        what = f"token request to {where} (scope {scope})"
        headers = {"Accept": "application/json"}
        if self.creds is not None:
            headers["Authorization"] = self.creds.header
        response = await self.http.get(url, what=what, headers=headers, secrets=self.secrets)
        self.token_scopes.add(scope)
        if response.status_code != 200:
            detail = error_detail(response, self.secrets)
            raise SourceError(f"{self.label}: {detail} on {what}")
        body = parse_json(response, self.label, what)
        token = None
        if isinstance(body, dict):
            token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.label}: no token in the response to {what}")
        self.secrets.append(token)
        self.authorization = f"Bearer {token}"

    def status_error(self, response: httpx.Response, what: str) -> SourceError:
        detail = error_detail(response, self.secrets)
        status = response.status_code
        if status == 401 and self.authorization and self.authorization.startswith("Bearer"):
            return SourceError(
                f"{self.label}: {detail}; the token does not grant {CATALOG_SCOPE} "
                "(the account needs catalog access)"
            )
        if status in (401, 403):
            return SourceError(f"{self.label}: {detail}")
        if 300 <= status < 400:
            target = safe_text(response.headers.get("location", "?"), self.secrets, 200)
            return SourceError(
                f"{self.label}: {detail} on {what}, redirected to {target}; "
                "put the final URL in the config"
            )
        return SourceError(f"{self.label}: {detail} on {what}")


def _pagination_invalid(response: httpx.Response) -> bool:
    return b"PAGINATION_NUMBER_INVALID" in response.content
