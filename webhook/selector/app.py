"""The selector's HTTP surface: the page, its static files, and the JSON API.

Routes (``GET`` only; anything else is 405, unknown paths 404, all as ``metav1.Status``):

- ``/`` the page, ``/static/app.js`` and ``/static/app.css`` (package data; no CDN);
- ``/healthz``;
- ``/api/v1/namespaces/{ns}/spaces``;
- ``/api/v1/namespaces/{ns}/repositories?registry=&space=&q=&page=&limit=``;
- ``/api/v1/namespaces/{ns}/repositories/{registry}/{repository...}/tags?page=&limit=``.

Every API request is authenticated and authorized before anything else is looked at:
``Authorization: Bearer`` → TokenReview → SubjectAccessReview for ``list images.spacegate.io``
in ``{ns}`` (:class:`~webhook.clients.access.AccessReviewer`); then its parts are checked
(``webhook.selector.names``: 400 naming the part), then the catalog answers (404 for
anything the namespace may not use, as for what does not exist; 502 when a registry cannot
be listed and nothing is cached). Every response carries a strict Content-Security-Policy
(scripts and styles from this origin only, nothing inline, no framing) and the usual
hardening headers; API answers are never cached by the browser.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any, Final, Protocol

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook.clients.access import Identity, Refusal, ResourceAccess
from webhook.clients.errors import SourceError
from webhook.selector.catalog import Catalog, NotVisible
from webhook.selector.names import (
    BadRequest,
    check_namespace,
    check_query,
    check_registry,
    check_repository,
    paging,
)

__all__ = ["SECURITY_HEADERS", "Checker", "create_selector_app"]

log = logging.getLogger(__name__)

JSON: Final = "application/json"
SECURITY_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
    "strict-transport-security": "max-age=31536000",
}
_STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}


class Checker(Protocol):
    """Who may list images in a namespace (an :class:`AccessReviewer`'s ``check``)."""

    async def check(
        self, authorization: str | None, attributes: ResourceAccess
    ) -> Identity | Refusal: ...


def status(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A ``metav1.Status`` answer, as the apiserver words its own."""
    body = Refusal(code, reason, message).body
    return Response(body, code, headers=headers, media_type=JSON)


class _Headers:
    """ASGI middleware adding :data:`SECURITY_HEADERS` (and no-store on the API)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.raw
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def create_selector_app(catalog: Catalog, checker: Checker) -> ASGIApp:
    """The selector's ASGI app over ``catalog``, letting in whom ``checker`` allows."""
    static = {
        path: (
            resources.files("webhook.selector").joinpath("static").joinpath(name).read_bytes(),
            kind,
        )
        for path, (name, kind) in _STATIC.items()
    }

    async def page(request: Request) -> Response:
        body, kind = static[request.url.path]
        return Response(body, media_type=kind)

    async def healthz(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def guarded(request: Request, answer: Any) -> Response:
        namespace = request.path_params["namespace"]
        header = request.headers.get("authorization")
        try:
            check_namespace(namespace)
        except BadRequest as exc:
            # Authenticate first even here: an anonymous caller learns nothing but 401.
            refused = await checker.check(header, ResourceAccess("list", "images", "spacegate.io"))
            if isinstance(refused, Refusal) and refused.status == 401:
                return status(401, refused.reason, refused.message, dict(refused.headers))
            return status(400, "BadRequest", str(exc))
        who = await checker.check(
            header, ResourceAccess("list", "images", "spacegate.io", namespace)
        )
        if isinstance(who, Refusal):
            return status(who.status, who.reason, who.message, dict(who.headers))
        try:
            result = await answer(namespace)
        except BadRequest as exc:
            return status(400, "BadRequest", str(exc))
        except NotVisible as exc:
            return status(404, "NotFound", str(exc))
        except SourceError as exc:
            return status(502, "BadGateway", f"the registry could not be listed: {exc}")
        return Response(orjson.dumps(result), media_type=JSON)

    async def spaces(request: Request) -> Response:
        async def answer(namespace: str) -> Any:
            return catalog.spaces(namespace)

        return await guarded(request, answer)

    async def repositories(request: Request) -> Response:
        params = request.query_params

        async def answer(namespace: str) -> Any:
            registry = params.get("registry") or None
            space = params.get("space") or None
            if registry is not None:
                check_registry(registry)
            if space is not None:
                check_repository(space)
            return await catalog.repositories(
                namespace,
                registry=registry,
                space=space,
                query=check_query(params.get("q", "")),
                paging=paging(params.get("page"), params.get("limit")),
            )

        return await guarded(request, answer)

    async def tags(request: Request) -> Response:
        params = request.query_params
        rest: str = request.path_params["rest"]

        async def answer(namespace: str) -> Any:
            registry, _, tail = rest.partition("/")
            if not tail.endswith("/tags"):
                raise BadRequest("expected .../repositories/{registry}/{repository}/tags")
            return await catalog.tags(
                namespace,
                registry=check_registry(registry),
                repository=check_repository(tail.removesuffix("/tags")),
                paging=paging(params.get("page"), params.get("limit")),
            )

        return await guarded(request, answer)

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return status(405, "MethodNotAllowed", f"{request.method} is not allowed here")
        return status(404, "NotFound", "the page could not be found")

    app = Starlette(
        routes=[
            *(Route(path, page, methods=["GET"]) for path in static),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/spaces", spaces, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/repositories", repositories, methods=["GET"]),
            Route("/api/v1/namespaces/{namespace}/repositories/{rest:path}", tags, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    return _Headers(app)
