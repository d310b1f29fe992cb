"""The Docker Registry HTTP API v2's authentication, shared by everything that talks to one.

The live source lists the catalog (``webhook.live.sources.docker_registry``), the image
selector lists tags and reads digests (``webhook.selector.listings``); both meet the same
challenges. :class:`RegistrySession` holds one conversation's authorization, as Distribution
2.8 expects it:

1. ``GET /v2/`` — 200 means anonymous access; 401 carries a ``WWW-Authenticate`` challenge.
2. ``Basic realm=...`` (htpasswd): send the configured username and password.
   ``Bearer realm=...,service=...``: get a token from the realm with ``service`` and the
   scope the request needs (basic auth with the configured account), then send
   ``Authorization: Bearer <token>``. A 401 with a new ``scope`` in its challenge gets one
   more token request for that scope; a token already held for a scope is reused.

Tokens and passwords are kept as secrets of the session: masked in every error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from webhook.clients.credentials import BasicCredentials
from webhook.clients.errors import SourceError
from webhook.clients.http import HttpClient, error_detail, parse_json, safe_text

__all__ = ["CATALOG_SCOPE", "Challenge", "RegistrySession", "parse_challenge"]

CATALOG_SCOPE: Final = "registry:catalog:*"


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


class RegistrySession:
    """The authorization state of one fetch: none, basic, or a bearer token.

    ``scope`` of :meth:`get` is the token scope asked for when the registry challenges
    without naming one (the catalog's, or ``repository:<name>:pull`` for tags).
    """

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
        self.accept = "application/json"
        self.tokens: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": self.accept}
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers

    async def _send(self, url: str, what: str, method: str = "GET") -> httpx.Response:
        return await self.http.request(
            method, url, what=what, headers=self._headers(), secrets=self.secrets
        )

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

    async def get(
        self, url: str, what: str, scope: str = CATALOG_SCOPE, method: str = "GET"
    ) -> httpx.Response:
        """GET (or HEAD) with the current authorization, answering one fresh challenge."""
        response = await self._send(url, what, method)
        if response.status_code == 401 and await self._answer(response, scope, what, again=True):
            response = await self._send(url, what, method)
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
            held = self.tokens.get(scope)
            if held is not None:
                if self.authorization == f"Bearer {held}":
                    return False  # the token for this scope was refused
                self.authorization = f"Bearer {held}"  # switch back to a token already held
                return True
            if scope in self.token_scopes:
                return False  # a token request for this scope already failed
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
        self.tokens[scope] = token
        self.authorization = f"Bearer {token}"

    def status_error(
        self, response: httpx.Response, what: str, scope: str = CATALOG_SCOPE
    ) -> SourceError:
        detail = error_detail(response, self.secrets)
        status = response.status_code
        if status == 401 and self.authorization and self.authorization.startswith("Bearer"):
            return SourceError(
                f"{self.label}: {detail}; the token does not grant {scope} "
                f"(the account needs {'catalog' if scope == CATALOG_SCOPE else 'pull'} access)"
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
