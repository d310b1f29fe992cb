"""Who is asking, and may they: bearer tokens reviewed by the Kubernetes API.

The image selector and ``/metrics`` answer only callers the cluster knows, the way
kube-rbac-proxy and controller-runtime's secure metrics do it:

1. **Authentication** — the ``Authorization: Bearer <token>`` header is sent to the apiserver
   as a ``TokenReview`` (with the configured audiences; none means the apiserver's own, which
   is what ``kubectl create token`` and a Pod's projected token carry). Not authenticated →
   401; the token's audiences must include one of ours.
2. **Authorization** — the identity the review returned (user, uid, groups, extra) is sent
   as a ``SubjectAccessReview`` for the attributes of the request: a virtual resource
   (``list images.spacegate.io`` in a namespace) or a non-resource URL (``get /metrics``).
   Not allowed → 403.

Answers are cached so that a page full of requests costs one review, with the lifetimes the
apiserver's delegating authenticator and authorizer use: allowed longer than denied (a new
RoleBinding shows within :data:`DENY_TTL`, a removed one within :data:`ALLOW_TTL`), and an
authenticated token never past its own ``exp`` (read from the JWT without trusting it: it only
shortens the cache lifetime). Caches are bounded in entries, keyed by a SHA-256 of the token
— the token itself is never kept as a key, logged, or put into a message — and concurrent
requests with one token share one review (:class:`~webhook.clients.single_flight.SingleFlight`).

Refusals carry a ``metav1.Status`` body worded like the apiserver's, naming who was refused
what (``User "system:serviceaccount:a:b" cannot list resource "images" in API group
"spacegate.io" in the namespace "team-a"``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from cachetools import TLRUCache

from webhook.clients.errors import API_ERRORS, describe_api_error
from webhook.clients.single_flight import SingleFlight

__all__ = [
    "ALLOW_TTL",
    "AUTHN_TTL",
    "DENY_TTL",
    "AccessReviewer",
    "Identity",
    "NonResource",
    "Refusal",
    "ResourceAccess",
    "kube_reviews",
]

log = logging.getLogger(__name__)

AUTHN_TTL: Final = 120.0  # an authenticated token (at most until its own exp)
AUTHN_FAIL_TTL: Final = 10.0  # a token the apiserver refused
ALLOW_TTL: Final = 300.0  # an allowed SubjectAccessReview
DENY_TTL: Final = 30.0  # a denied one
MAX_CACHED: Final = 4096  # entries per cache
MAX_TOKEN_BYTES: Final = 16 * 1024  # longer than any real token: refused unreviewed
MAX_CONCURRENT_REVIEWS: Final = 8
REVIEW_TIMEOUT: Final = 10.0

# (kind of review, request body) -> the review's ``status`` as a dict. Raises on failure.
ReviewCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to, as the TokenReview said."""

    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceAccess:
    """A SubjectAccessReview's resource attributes (``list images.spacegate.io`` in ``ns``)."""

    verb: str
    resource: str
    group: str = ""
    namespace: str = ""

    def spec(self) -> dict[str, Any]:
        return {
            "resourceAttributes": {
                "verb": self.verb,
                "group": self.group,
                "resource": self.resource,
                "namespace": self.namespace,
            }
        }

    def phrase(self) -> str:
        """The apiserver's wording of what was refused."""
        group = f' in API group "{self.group}"' if self.group else ""
        where = (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        return f'{self.verb} resource "{self.resource}"{group}{where}'


@dataclass(frozen=True, slots=True)
class NonResource:
    """A SubjectAccessReview's non-resource attributes (``get /metrics``)."""

    verb: str
    path: str

    def spec(self) -> dict[str, Any]:
        return {"nonResourceAttributes": {"verb": self.verb, "path": self.path}}

    def phrase(self) -> str:
        return f'{self.verb} path "{self.path}"'


Attributes = ResourceAccess | NonResource


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 401, 403 or 503 to send back: status, ``metav1.Status`` body and headers."""

    status: int
    reason: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        return orjson.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": self.message,
                "reason": self.reason,
                "code": self.status,
            }
        )


def _unauthorized(message: str) -> Refusal:
    return Refusal(401, "Unauthorized", message, {"WWW-Authenticate": 'Bearer realm="spacegate"'})


def _token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified (it only shortens a cache lifetime)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def bearer_token(authorization: str | None) -> str | Refusal:
    """The token of an ``Authorization: Bearer`` header, or the 401 for its absence."""
    if not authorization:
        return _unauthorized("Unauthorized: no bearer token (send Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorized("Unauthorized: the Authorization header is not a bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        return _unauthorized(f"Unauthorized: the bearer token is over {MAX_TOKEN_BYTES} bytes")
    return token


@dataclass(frozen=True, slots=True)
class _Authn:
    identity: Identity | None
    refusal: Refusal | None
    expires: float


@dataclass(frozen=True, slots=True)
class _Authz:
    allowed: bool
    reason: str
    expires: float


def _ttu(_key: object, value: _Authn | _Authz, _now: float) -> float:
    return value.expires


class AccessReviewer:
    """TokenReview + SubjectAccessReview with caches, for one listener.

    ``review`` sends a review to the apiserver (:func:`kube_reviews`; tests inject their
    own). ``audiences`` go into every TokenReview (empty: the apiserver's). ``clock`` is
    ``time.time`` (token ``exp`` claims are wall-clock).
    """

    def __init__(
        self,
        review: ReviewCall,
        *,
        audiences: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        max_entries: int = MAX_CACHED,
        max_concurrent: int = MAX_CONCURRENT_REVIEWS,
    ) -> None:
        self._review = review
        self.audiences = tuple(audiences)
        self._clock = clock
        self._authn: TLRUCache[str, _Authn] = TLRUCache(max_entries, _ttu, timer=clock)
        self._authz: TLRUCache[tuple[Identity, Attributes], _Authz] = TLRUCache(
            max_entries, _ttu, timer=clock
        )
        self._authn_flight: SingleFlight[_Authn] = SingleFlight()
        self._authz_flight: SingleFlight[_Authz] = SingleFlight()
        self._slots = asyncio.Semaphore(max_concurrent)

    async def check(self, authorization: str | None, attributes: Attributes) -> Identity | Refusal:
        """The caller's identity when it may do ``attributes``; otherwise the refusal."""
        token = bearer_token(authorization)
        if isinstance(token, Refusal):
            return token
        authn = await self._authenticate(token)
        if authn.identity is None:
            assert authn.refusal is not None
            return authn.refusal
        identity = authn.identity
        authz = await self._authorize(identity, attributes)
        if authz.allowed:
            return identity
        why = f": {authz.reason}" if authz.reason else ""
        return Refusal(
            403,
            "Forbidden",
            f'forbidden: User "{identity.user}" cannot {attributes.phrase()}{why}',
        )

    # ------------------------------------------------------------------ authentication

    async def _authenticate(self, token: str) -> _Authn:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._authn.get(key)
        if hit is not None:
            return hit
        return await self._authn_flight.run(key, lambda: self._token_review(key, token))

    async def _token_review(self, key: str, token: str) -> _Authn:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status = await self._send("TokenReview", body)
        if isinstance(status, Refusal):
            return _Authn(None, status, 0.0)  # not cached: the apiserver may be back soon
        now = self._clock()
        user = status.get("user") if isinstance(status.get("user"), dict) else {}
        assert isinstance(user, dict)
        audiences = status.get("audiences")
        accepted = status.get("authenticated") is True and isinstance(user.get("username"), str)
        if (
            accepted
            and self.audiences
            and not (isinstance(audiences, list) and set(audiences) & set(self.audiences))
        ):
            accepted = False
        if not accepted:
            wanted = ", ".join(self.audiences) or "the Kubernetes API's"
            result = _Authn(
                None,
                _unauthorized(
                    "Unauthorized: the bearer token was not accepted (invalid, expired, revoked, "
                    f"or not issued for audience {wanted})"
                ),
                now + AUTHN_FAIL_TTL,
            )
        else:
            expiry = _token_expiry(token)
            until = now + AUTHN_TTL if expiry is None else min(now + AUTHN_TTL, expiry)
            identity = Identity(
                user["username"],
                str(user.get("uid") or ""),
                tuple(g for g in user.get("groups") or () if isinstance(g, str)),
                tuple(
                    sorted(
                        (k, tuple(v))
                        for k, v in (user.get("extra") or {}).items()
                        if isinstance(v, list)
                    )
                ),
            )
            result = _Authn(identity, None, until)
        if result.expires > now:
            self._authn[key] = result
        return result

    # ------------------------------------------------------------------ authorization

    async def _authorize(self, identity: Identity, attributes: Attributes) -> _Authz:
        key = (identity, attributes)
        hit = self._authz.get(key)
        if hit is not None:
            return hit
        return await self._authz_flight.run(key, lambda: self._access_review(key))

    async def _access_review(self, key: tuple[Identity, Attributes]) -> _Authz:
        identity, attributes = key
        spec: dict[str, Any] = {
            "user": identity.user,
            "groups": list(identity.groups),
            **attributes.spec(),
        }
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        status = await self._send("SubjectAccessReview", body)
        if isinstance(status, Refusal):
            return _Authz(False, status.message, 0.0)
        allowed = status.get("allowed") is True and status.get("denied") is not True
        reason = status.get("reason")
        now = self._clock()
        result = _Authz(
            allowed,
            reason if isinstance(reason, str) and not allowed else "",
            now + (ALLOW_TTL if allowed else DENY_TTL),
        )
        self._authz[key] = result
        return result

    # ------------------------------------------------------------------ transport

    async def _send(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | Refusal:
        """The review's status, or a 503 naming why there is none (never the token)."""
        async with self._slots:
            try:
                status = await asyncio.wait_for(self._review(kind, body), REVIEW_TIMEOUT)
            except TimeoutError:
                problem = f"no answer within {REVIEW_TIMEOUT:.0f}s"
            except (*API_ERRORS, OSError, ValueError) as exc:
                problem = describe_api_error(exc)
            else:
                return status
        log.error("%s failed: %s", kind, problem)
        return Refusal(
            503, "ServiceUnavailable", f"cannot review the request ({kind} failed: {problem})"
        )


def kube_reviews(api_client: Any) -> ReviewCall:
    """A :data:`ReviewCall` through a ``kubernetes`` ApiClient, run in a worker thread."""
    from kubernetes import client as k8s

    # Any: the bodies are plain dicts (the client serializes them as they are) and the answers
    # are read raw (``_preload_content=False``), skipping the models both ways.
    authn: Any = k8s.AuthenticationV1Api(api_client)
    authz: Any = k8s.AuthorizationV1Api(api_client)

    def send(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        create = (
            authn.create_token_review
            if kind == "TokenReview"
            else authz.create_subject_access_review
        )
        response = create(body, _preload_content=False, _request_timeout=REVIEW_TIMEOUT)
        answer = orjson.loads(response.data)
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise ValueError(f"{kind}: the answer has no status")
        return status

    async def review(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(send, kind, body)

    return review
