"""A Harbor v2.0 API fake: projects, their visibility, and who may see them.

It follows ``specs/harbor-v2.0-swagger.yaml`` and Harbor's handlers for what spacegate
reads, served over real HTTP by :class:`tests.fakes.ServerThread`:

- ``GET /api/v2.0/ping`` → ``200 text/plain`` ``Pong``, no authentication.
- ``GET /api/v2.0/projects`` (``listProjects``): ``page`` (default 1), ``page_size``
  (default 10, maximum 100; above → 422 ``UNPROCESSABLE_ENTITY`` as go-swagger's
  validation answers; 0 → everything, no ``Link``), ``public`` (boolean filter), ``name``
  (fuzzy: substring), ``with_detail`` (accepted; the short form is always returned).
  Headers ``X-Total-Count`` and ``Link`` built like Harbor's ``BaseAPI.Links``: request
  path with ``page``/``page_size`` rewritten, query keys sorted and unescaped, entries
  ``<url>; rel="prev"`` and ``<url>; rel="next"`` joined by ``" , "``. Projects are
  ordered by name. ``metadata.public`` is the string ``"true"``/``"false"``; proxy-cache
  projects carry ``registry_id`` and the proxy metadata keys.
- ``GET /api/v2.0/users/current/permissions`` → ``200 []`` for any authenticated
  principal, 401 otherwise; ``GET /api/v2.0/users/current`` → the user, 412 for robots.
- Basic auth, as Harbor's security middleware does it: valid credentials make a user or
  robot principal; *invalid credentials are not rejected but treated as anonymous* (the
  basic-auth generator returns no security context and the request falls through to the
  unauthenticated one), so ``/projects`` answers 200 with public projects only, and only
  endpoints that require authentication (``/users/current...``) answer 401
  ``{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}``.
- Visibility (``ListProjects``): anonymous → public only (``public=false`` → empty);
  admin users and system robots with ``project:list`` → everything; other users and
  project robots (``robot$<project>+<name>``) → public projects plus their own.
- Every response carries ``X-Request-Id``; errors are ``{"errors":[{code, message}]}``.

Fault knobs (``HarborFake.faults``): ``fail_next`` (500/503/429 with ``Retry-After``...),
``delay_next``, ``truncate_next``, ``drop_next``, ``garbage_next``; they apply to
``/api/`` requests in order. ``requests`` lists what was received (no passwords).

Not modelled: repositories, artifacts, tags, the ``/v2/`` registry API and its token
service, project members and roles beyond "member or not", RBAC on anything but listing,
``q=`` query expressions and ``sort``, ``owner``, ``X-Is-Resource-Name``, project
creation/update/deletion over HTTP (use the Python methods), quotas, storage limits, CVE
allowlists, OIDC/LDAP/UAA auth modes, sessions and CSRF, the robot-account API, and
``systeminfo``/``health``.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes import (
    FaultMiddleware,
    Faults,
    RecordedRequest,
    ServedFake,
    ServerThread,
    basic_auth,
)

__all__ = ["ADMIN_PASSWORD", "ADMIN_USER", "HarborFake", "Principal"]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "Harbor12345"  # Harbor's well-known default; a fake, not a secret
ROBOT_PREFIX = "robot$"
MAX_PAGE_SIZE = 100
_CREATED = "2024-05-01T08:00:00.000Z"


@dataclass(slots=True)
class _Project:
    project_id: int
    name: str
    public: bool
    registry_id: int | None = None

    def to_json(self) -> dict[str, object]:
        metadata: dict[str, str] = {"public": "true" if self.public else "false"}
        body: dict[str, object] = {
            "project_id": self.project_id,
            "owner_id": 1,
            "name": self.name,
            "creation_time": _CREATED,
            "update_time": _CREATED,
            "deleted": False,
            "owner_name": "",
            "repo_count": 0,
            "current_user_role_id": 0,
            "current_user_role_ids": None,
            "metadata": metadata,
        }
        if self.registry_id:
            body["registry_id"] = self.registry_id
            metadata.update(
                proxy_speed_kb="-1", max_upstream_conn="-1", proxy_cache_local_on_not_found="false"
            )
        return body


@dataclass(frozen=True, slots=True)
class Principal:
    """A user or robot account of the fake."""

    name: str
    password: str = field(repr=False)
    admin: bool = False  # sysadmin user, or system robot with project:list
    robot: bool = False
    member_of: frozenset[str] = frozenset()


class HarborFake(ServedFake):
    """A Harbor project API on ``127.0.0.1``; use as a context manager or start/stop.

    State changes (projects, accounts) are thread-safe and visible to the next request.
    """

    def __init__(self, *, admin_user: str = ADMIN_USER, admin_password: str = ADMIN_PASSWORD):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._projects: dict[str, _Project] = {}
        self._sorted: list[_Project] | None = None
        self._principals: dict[str, Principal] = {}
        self._admin = Principal(admin_user, admin_password, admin=True)
        self.faults = Faults()
        app = Starlette(
            routes=[
                Route("/api/v2.0/ping", self._ping),
                Route("/api/v2.0/projects", self._list_projects),
                Route("/api/v2.0/users/current", self._current_user),
                Route("/api/v2.0/users/current/permissions", self._current_permissions),
            ]
        )
        self._middleware = FaultMiddleware(app, self.faults, prefix="/api/")
        self._server = ServerThread(self._middleware, name="harbor-fake")
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Back to an empty Harbor with only the admin account; faults and log cleared."""
        with self._lock:
            self._projects.clear()
            self._sorted = None
            self._principals = {self._admin.name: self._admin}
        self.faults.clear()
        self._middleware.forget()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests received so far (method, path, query, auth scheme, username)."""
        return self._middleware.recorded()

    # ------------------------------------------------------------------ state

    def add_project(self, name: str, public: bool, registry_id: int | None = None) -> int:
        """Create a project (a proxy cache when ``registry_id`` is set); returns its id."""
        self.add_projects([name], public=public, registry_id=registry_id)
        return self._projects[name].project_id

    def add_projects(
        self, names: Iterable[str], *, public: bool = False, registry_id: int | None = None
    ) -> None:
        """Create many projects at once (10,000 take a few milliseconds)."""
        with self._lock:
            for name in names:
                if name in self._projects:
                    raise ValueError(f"project {name!r} exists")
                self._projects[name] = _Project(next(self._ids), name, public, registry_id)
            self._sorted = None

    def set_public(self, name: str, public: bool) -> None:
        with self._lock:
            self._projects[name].public = public

    def remove_project(self, name: str) -> None:
        with self._lock:
            del self._projects[name]
            self._sorted = None

    def add_user(
        self, name: str, password: str, *, admin: bool = False, member_of: Iterable[str] = ()
    ) -> None:
        """A local user; ``admin`` makes it a system admin (sees every project)."""
        with self._lock:
            self._principals[name] = Principal(name, password, admin, False, frozenset(member_of))

    def add_robot(self, name: str, secret: str, *, project: str | None = None) -> str:
        """A robot account; returns the login name Harbor gives it.

        Without ``project``: a system robot with ``project:list`` (``robot$<name>``), which
        sees every project. With ``project``: a project robot (``robot$<project>+<name>``)
        that sees public projects and its own.
        """
        login = f"{ROBOT_PREFIX}{name}" if project is None else f"{ROBOT_PREFIX}{project}+{name}"
        members = frozenset() if project is None else frozenset({project})
        with self._lock:
            self._principals[login] = Principal(login, secret, project is None, True, members)
        return login

    # ------------------------------------------------------------------ handlers

    def _principal(self, request: Request) -> Principal | None:
        creds = basic_auth(request.headers.get("authorization"))
        if creds is None:
            return None
        with self._lock:
            principal = self._principals.get(creds[0])
        if principal is None or principal.password != creds[1]:
            return None  # Harbor falls through to the unauthenticated context
        return principal

    async def _ping(self, request: Request) -> Response:
        return PlainTextResponse("Pong", headers=_request_id())

    async def _current_user(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        if principal.robot:
            return _error(
                412, "PRECONDITION",
                "get current user not available for security context: robot",
            )
        return _json({"user_id": 1, "username": principal.name, "sysadmin_flag": principal.admin})

    async def _current_permissions(self, request: Request) -> Response:
        if self._principal(request) is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        return _json([])

    async def _list_projects(self, request: Request) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        params = dict(query)
        try:
            page = int(params.get("page", "1"))
            page_size = int(params.get("page_size", "10"))
        except ValueError as exc:
            return _error(422, "UNPROCESSABLE_ENTITY", f"validation failure list:\n{exc}")
        if page_size > MAX_PAGE_SIZE:
            return _error(
                422, "UNPROCESSABLE_ENTITY",
                "validation failure list:\npage_size in query should be less than or equal "
                f"to {MAX_PAGE_SIZE}",
            )
        public = _bool(params.get("public"))
        if public == "invalid":
            return _error(
                422, "UNPROCESSABLE_ENTITY",
                f"validation failure list:\npublic in query must be of type boolean: "
                f"\"{params['public']}\"",
            )
        principal = self._principal(request)
        if principal is None:
            if public is False:  # anonymous asking for private projects: nothing
                return _json([], headers={"X-Total-Count": "0"})
            public = True
        name = params.get("name") or None
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._projects.values(), key=lambda p: p.name)
            everything = self._sorted
        matches = [
            p for p in everything
            if (public is None or p.public == public)
            and (name is None or name in p.name)
            and (principal is None or principal.admin or p.public or p.name in principal.member_of)
        ]
        total = len(matches)
        page = max(page, 1)
        selected = matches[(page - 1) * page_size:page * page_size] if page_size > 0 else matches
        headers = {"X-Total-Count": str(total)}
        link = _links(request.url.path, query, total, page, page_size)
        if link:
            headers["Link"] = link
        return _json([p.to_json() for p in selected], headers=headers)


def _bool(value: str | None) -> bool | str | None:
    """go-openapi's boolean parsing: None when absent, "invalid" when not a boolean."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "y", "on", "t", "ok", "checked", "enabled", "selected"):
        return True
    if lowered in ("false", "0", "no", "n", "off", "f", "unchecked", "disabled"):
        return False
    return "invalid"


def _links(
    path: str, query: list[tuple[str, str]], total: int, page: int, page_size: int
) -> str:
    """Harbor's ``BaseAPI.Links``: prev iff page > 1 and (page-1)*size < total; next iff
    page*size < total; query re-encoded with sorted keys, then unescaped (as Go does)."""
    if page_size <= 0:
        return ""

    def url(number: int) -> str:
        rest = [(k, v) for k, v in query if k not in ("page", "page_size")]
        pairs = [*rest, ("page", str(number)), ("page_size", str(page_size))]
        pairs.sort(key=lambda kv: kv[0])  # Go's url.Values.Encode sorts by key (stable)
        return f"{path}?{unquote_plus(urlencode(pairs))}"

    links = []
    if page > 1 and (page - 1) * page_size < total:
        links.append(f'<{url(page - 1)}>; rel="prev"')
    if page * page_size < total:
        links.append(f'<{url(page + 1)}>; rel="next"')
    return " , ".join(links)


def _request_id() -> dict[str, str]:
    return {"X-Request-Id": str(uuid.uuid4())}


def _json(body: object, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**_request_id(), **(headers or {})},
    )


def _error(status: int, code: str, message: str) -> Response:
    body = orjson.dumps({"errors": [{"code": code, "message": message}]}) + b"\n"
    return Response(
        body,
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers=_request_id(),
    )
