"""HTTP plumbing of every registry client: timeouts, retries, credentials, safe errors.

The live sources (listing spaces) and the leader's Harbor robot client must fail the same
way: in bounded time, after a bounded number of polite retries, with an error message that
can be logged as it is. The refresher keeps the last-known-good spaces when a source fails,
so a request should give up cleanly rather than stall, and it must never put a credential
into an exception, a log line or a metric label. Those rules are written once, here:

- :data:`DEFAULT_TIMEOUT` sets connect/read/write/pool timeouts explicitly (httpx's default
  of 5 s for everything hides which phase was slow).
- :class:`RetryPolicy` retries connection failures, timeouts, dropped connections, 429 (after
  its ``Retry-After``) and 5xx with exponential backoff and jitter, and never 4xx: a wrong
  password does not get better by asking again, and retrying it can lock the account.
- credentials are read from their files on every request (``webhook.clients.credentials``),
  so a rotated Kubernetes Secret is picked up without a restart.
- :func:`safe_text` is the only way server-provided text reaches an error message: secrets
  are masked (a server may echo what it was sent), control characters are dropped, the
  length is capped.
- :class:`HttpClient` sends one request with all of the above (the one retry loop; a
  request that creates something is never repeated once it may have been sent);
  :func:`next_link` reads the next page from ``Link`` headers and :func:`same_origin_url`
  refuses pagination links to another origin (which would hand the credential to a host
  the operator never configured).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from policy.config import Registry
from webhook.clients.backoff import Backoff
from webhook.clients.errors import SourceError

__all__ = [
    "DEFAULT_TIMEOUT",
    "HttpClient",
    "RetryPolicy",
    "Sleep",
    "error_detail",
    "next_link",
    "parse_json",
    "request_path",
    "safe_text",
    "same_origin_url",
]

log = logging.getLogger(__name__)

# Connect fails fast (an unreachable host should not eat the refresh interval); read allows a
# slow Harbor database to answer a page of 100 projects; pool covers waiting for a connection.
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=5.0)

_MASK = "***"
_MAX_TEXT = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

Sleep = Callable[[float], Awaitable[None]]


def safe_text(text: str, secrets: Iterable[str] = (), limit: int = _MAX_TEXT) -> str:
    """``text`` made fit for an error message: secrets masked, one line, at most ``limit`` chars.

    Secrets are masked longest first so that a secret containing another is masked whole.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    text = _CONTROL.sub(" ", text).strip()
    text = re.sub(r"\s{2,}", " ", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a request is repeated.

    ``retries`` counts the extra attempts after the first. Delays grow as
    ``backoff * 2**n`` up to ``max_backoff``, with "equal jitter" (half fixed, half random)
    so replicas that failed together do not come back together. A ``Retry-After`` is
    honoured when it is at most ``max_retry_after``; a longer one ends the fetch at once
    (the refresher will try again at its next interval, with last-known-good data meanwhile)
    instead of stalling a refresh for minutes.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        return Backoff(self.backoff, self.max_backoff, jitter=0.5).delay(retry, rng)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _transport_problem(exc: httpx.HTTPError) -> tuple[str, bool]:
    """(what went wrong, worth retrying) for an httpx exception, without request details."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "pool",
        }.get(type(exc), "request")
        return f"{phase} timeout", True
    if isinstance(exc, httpx.ConnectError):
        # A certificate problem will be the same in a second; do not hammer the server.
        tls = "CERTIFICATE_VERIFY_FAILED" in detail or "SSL" in detail
        return f"connection failed: {detail}", not tls
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"connection dropped: {detail}", True
    return f"request failed: {type(exc).__name__}: {detail}", False


# --------------------------------------------------------------------------- responses


def error_detail(response: httpx.Response, secrets: Sequence[str] = ()) -> str:
    """``"401 UNAUTHORIZED: unauthorized"`` from a Harbor/Distribution error body.

    Both APIs answer errors with ``{"errors": [{"code": ..., "message": ...}]}``; anything
    else (a proxy's HTML page, an empty body) falls back to the status and reason phrase, or
    a short plain-text body.
    """
    status = response.status_code
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = []
        for item in body["errors"]:
            if isinstance(item, dict):
                code = str(item.get("code") or "").strip()
                message = str(item.get("message") or "").strip()
                parts.append(f"{code}: {message}" if code and message else code or message)
        parts = [p for p in parts if p]
        if parts:
            return safe_text(f"{status} " + "; ".join(parts), secrets)
    reason = response.reason_phrase or "error"
    ctype = response.headers.get("content-type", "")
    text = response.text.strip() if ctype.startswith("text/plain") else ""
    if text:
        return safe_text(f"{status} {reason}: {text}", secrets)
    return f"{status} {reason}"


def parse_json(response: httpx.Response, label: str, what: str) -> object:
    """The response body as JSON, or a :class:`SourceError` naming the request."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        size = len(response.content)
        raise SourceError(
            f"{label}: invalid JSON in the response to {what} ({size} bytes): {exc}"
        ) from None


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of a response's ``Link`` headers, as sent (usually relative).

    httpx parses RFC 8288 links, including Harbor's entries joined by ``" , "``
    (``<u>; rel="prev" , <u>; rel="next"``) and Distribution's single ``<u>; rel="next"``.
    """
    url = response.links.get("next", {}).get("url")
    return url or None


def same_origin_url(base: str, link: str, origin: str, label: str) -> str:
    """``link`` resolved against ``base``; refused unless it stays on ``origin``'s host.

    Pagination links come from the server. Following one to another scheme, host or port
    would send the registry credential there, so that is an error, not a redirect.
    """
    url = urljoin(base, link)
    scheme, host, port = _origin(url)
    if (scheme, host, port) != _origin(origin):
        shown = safe_text(f"{scheme}://{host}:{port}", (), 120)
        raise SourceError(
            f"{label}: refusing to follow a pagination link to another origin ({shown})"
        )
    return url


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: never equal to a real origin
    return scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme)


def request_path(url: str) -> str:
    """Path and query of ``url`` for messages (never the userinfo or host)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --------------------------------------------------------------------------- client

# Failures that prove a request never left: retrying it cannot do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class HttpClient:
    """GET with explicit timeouts and retries, for one registry, with safe error text.

    ``label`` (e.g. ``harbor 'main'``) prefixes every error. A caller-provided
    ``httpx.AsyncClient`` is used as is and left open by :meth:`aclose`; otherwise one is
    created with :data:`DEFAULT_TIMEOUT` (or ``timeout``) and owned here. Redirects are not
    followed: a registry URL that redirects is a config error worth reporting.
    """

    def __init__(
        self,
        label: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.label = label
        self.retry = retry or RetryPolicy()
        # An explicit timeout wins; otherwise a caller's client keeps its own settings (None).
        if isinstance(timeout, httpx.Timeout):
            self._timeout: httpx.Timeout | None = timeout
        elif timeout is not None:
            self._timeout = httpx.Timeout(timeout)
        else:
            self._timeout = None if client else DEFAULT_TIMEOUT
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    async def aclose(self) -> None:
        """Close the connection pool if this object created it."""
        if self._owns_client:
            await self._client.aclose()

    async def get(
        self,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
    ) -> httpx.Response:
        """The response to ``GET url``, after retrying what is worth retrying.

        Returns the final response whatever its status, except a retryable status (429,
        5xx) still failing after the last retry, which raises :class:`SourceError`, as does
        a transport failure. ``what`` names the request in messages (``GET /v2/ ...``).
        """
        return await self.request("GET", url, what=what, headers=headers, secrets=secrets)

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        body: bytes | None = None,
        idempotent: bool = True,
        uncertain: Callable[[str], SourceError] | None = None,
    ) -> httpx.Response:
        """Like :meth:`get`, for any method; the one retry loop of every registry request.

        A request that is not ``idempotent`` (creating something) is retried only when it
        was never sent (the connection could not be opened); once it may have reached the
        server, a failure raises ``uncertain(problem)`` (default: a :class:`SourceError`
        saying the outcome is unknown) instead of being repeated, and a 429 says nothing
        was done.
        """
        attempts = self.retry.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            timeout = httpx.USE_CLIENT_DEFAULT if self._timeout is None else self._timeout
            try:
                response = await self._client.request(
                    method, url, headers=headers, content=body, timeout=timeout
                )
            except httpx.HTTPError as exc:
                problem, retryable = _transport_problem(exc)
                problem = safe_text(problem, secrets)
                if not idempotent and not isinstance(exc, NOT_SENT):
                    raise self._uncertain(uncertain, f"{problem} on {what}") from None
                if not retryable or last:
                    tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
                    raise SourceError(f"{self.label}: {what}: {problem}{tries}") from None
                await self._pause(attempt, what, problem, None)
                continue
            status = response.status_code
            if status != 429 and status < 500:
                return response
            detail = error_detail(response, secrets)
            if not idempotent:
                if status == 429:  # refused before any work: nothing was done
                    raise SourceError(
                        f"{self.label}: {detail} on {what}; nothing was done, try again later"
                    )
                raise self._uncertain(uncertain, f"{detail} on {what}")
            wait = _retry_after(response) if status == 429 else None
            if wait is not None and wait > self.retry.max_retry_after:
                raise SourceError(
                    f"{self.label}: {detail} on {what}; Retry-After {wait:.0f}s exceeds "
                    f"{self.retry.max_retry_after:.0f}s, trying again at the next refresh"
                )
            if last:
                tries = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
                raise SourceError(f"{self.label}: {detail} on {what}{tries}")
            await self._pause(attempt, what, detail, wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _uncertain(
        self, uncertain: Callable[[str], SourceError] | None, problem: str
    ) -> SourceError:
        if uncertain is not None:
            return uncertain(problem)
        return SourceError(f"{self.label}: {problem}; not retried, the outcome is unknown")

    async def _pause(self, attempt: int, what: str, problem: str, wait: float | None) -> None:
        delay = self.retry.delay(attempt, self._rng)
        if wait is not None:
            delay = max(delay, wait)
        log.warning(
            "%s: %s: %s; retry %d/%d in %.2fs",
            self.label,
            what,
            problem,
            attempt + 1,
            self.retry.retries,
            delay,
        )
        await self._sleep(delay)


class RegistrySource:
    """What every registry client shares (the Harbor and Docker Registry sources, the
    Harbor robot client): one retrying HTTP client per registry, a label for messages,
    page-size bounds, and closing.

    Subclasses set :attr:`KIND` (the word used in messages) and :attr:`MAX_PAGE_SIZE`, and
    implement their calls (``fetch`` for a source). See the subclasses for the meaning of
    each argument.
    """

    KIND: ClassVar[str] = "registry"
    MAX_PAGE_SIZE: ClassVar[int] = 100

    def __init__(
        self,
        registry: Registry,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 30.0,
        page_size: int | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        size = self.MAX_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= self.MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {self.MAX_PAGE_SIZE}, got {size}")
        self.name = registry.name
        self._registry = registry
        self._label = f"{self.KIND} '{registry.name}'"
        self._base = registry.url.rstrip("/")
        self._page_size = size
        self._http = HttpClient(
            self._label,
            client=client,
            timeout=timeout,
            retry=RetryPolicy(
                retries=retries,
                backoff=backoff,
                max_backoff=max_backoff,
                max_retry_after=max_retry_after,
            ),
            sleep=sleep,
            rng=rng,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self._base!r})"

    async def aclose(self) -> None:
        """Release connections (only those of a client this source created)."""
        await self._http.aclose()
