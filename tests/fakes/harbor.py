"""A Harbor v2.0 API fake: projects, robot accounts, and who may see and pull what.

It follows ``specs/harbor-v2.0-swagger.yaml`` and Harbor's handlers (goharbor/harbor, read
at the 2026-08 snapshot; file names below are in that repository) for what spacegate reads
and manages, served over real HTTP by :class:`tests.fakes.ServerThread`.

What it models:

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
  endpoints that require authentication answer 401
  ``{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}``. A robot that is
  disabled, or whose ``expires_at`` (not -1) has passed, is anonymous too
  (``server/middleware/security/robot.go``); so is a wrong robot secret.
- Visibility (``ListProjects``): anonymous → public only (``public=false`` → empty);
  admin users and robots with system ``project:list`` (or project access on ``*``) →
  everything; other users and robots → public projects plus those they are a member of
  or hold a project permission on.
- The robot API (``server/v2.0/handler/robot.go``, ``controller/robot/controller.go``):

  - ``POST /api/v2.0/robots`` (``RobotCreate``) → 201 ``RobotCreated`` ``{id, name,
    secret, creation_time, expires_at}`` plus ``Location``; the secret is generated
    (``RobotCreate.secret`` is ignored, as at Harbor HEAD) and only ever returned here.
    Checks in Harbor's order: name ``^[a-z0-9]+(?:[._-][a-z0-9]+)*$`` (400); ``duration``
    -1 or 1..2³¹-2 days (absent = 0 → 400); ``level`` ``system``/``project`` (400);
    permissions and each ``access`` non-empty (400 "bad request empty permission/access");
    ``level: project`` with more than one permission (400 "bad request permission");
    every access in Harbor's grantable list for its kind (400 "bad request permission:
    res:act" — ``robot:update`` is *not* grantable since 2.12); permission ``kind``
    ``system``/``project`` (400). Then access: anonymous → 401; system level needs system
    ``robot:create``, project level project ``robot:create`` (403 ``FORBIDDEN`` whose
    message is the caller's name, as ``RequireSystemAccess`` words it). A robot caller
    may only create permissions equal to or narrower than its own
    (``isValidPermissionScope``: every ``kind:namespace`` of the new robot must be one of
    the caller's, or the caller must hold ``kind:*``, with every ``resource:action:effect``
    among the caller's) → 403 ``DENIED`` "permission scope is invalid. …". Then the
    project of a project-level robot must exist (404); the stored name must be free (409
    ``CONFLICT`` "robot account <project_id>:<name> already exists"); ``kind: system``
    needs ``namespace: "/"`` (400 "unknown namespace") and every named project must
    exist (404 "project <name> not found"; nothing is created, as Harbor's transaction
    middleware rolls back). System robots are named ``robot$<name>``, project robots
    ``robot$<project>+<name>``. ``expires_at`` = now + ``duration`` days, or -1.
  - ``GET /api/v2.0/robots``: 401 when anonymous; no ``q`` or ``q=Level=system`` →
    system robots, ``q=Level=project,ProjectID=<id>`` → that project's robots (400 for a
    bad level or id); needs ``robot:list`` at that level (403). In ``q`` the fake models
    ``name=<exact>`` and ``name=~<substring>`` (case-insensitive, matched against the
    stored name, which has *no* ``robot$`` prefix, as in Harbor's database), ``Level``
    and ``ProjectID``; other keys are ignored (as Harbor ignores non-filterable keys);
    range ``[a~b]`` and list ``{a b}``/``(a b)`` values answer 400 (not modelled).
    Paginated like ``/projects`` (``X-Total-Count``, ``Link``), ordered by name (Harbor's
    default sort). Items are ``Robot`` objects without ``secret``; permissions of deleted
    projects are left out, as Harbor hides them.
  - ``GET /api/v2.0/robots/{id}`` (401, then 404, then 403 without ``robot:read``);
    ``DELETE`` → 200 with an empty body (401/404/403 ``robot:delete``);
    ``PUT`` (``Robot``): 401, 404, the create validation (``duration`` may be omitted:
    unchanged), a project robot's project must stay the same (400), then ``robot:update``
    (403), then ``name`` (full, with ``robot$``) and ``level`` must be unchanged (400
    "cannot update the level or name of robot"); ``description`` and ``disable`` are
    overwritten (absent ``disable`` = enabled), a changed ``duration`` sets ``expires_at``
    from the *creation* time, permissions are replaced wholesale. ``PATCH`` (``RobotSec``):
    401, 404, 403 without ``robot:update``; an empty ``secret`` → a generated one is
    returned; a chosen one must be 8–128 chars with an upper, a lower and a digit (400),
    and the answer's ``secret`` is then ``""``. The old secret stops working at once.
    Since ``robot:update`` cannot be granted to a robot (Harbor ≥ 2.12), a robot caller's
    PUT and PATCH always get 403, while a sysadmin user's work.
- Permissions are evaluated like Harbor's security contexts: a sysadmin user may do
  everything; a plain user may pull (and list/read repositories) in projects it is a
  member of; public projects grant ``repository:pull/list``, ``artifact:read/list`` and
  ``tag:list`` to everyone, anonymous included. A robot holds exactly its permissions; a
  project permission on ``*`` covers every current and future project; a *project-level*
  robot with ``repository:push`` may also pull. Quirk kept from Harbor's robot context: a
  *system* robot holding no project permission at all has no project evaluator, so it
  cannot even pull from public projects with basic auth.
- The registry side, enough for pull checks (``server/middleware/v2auth/auth.go``):
  ``GET /v2/`` → 200 ``{}`` for an authenticated principal (valid basic credentials or a
  token from ``/service/token``), otherwise 401 with ``WWW-Authenticate: Basic
  realm="harbor"`` when an ``Authorization`` header was sent, and ``Bearer
  realm="<url>/service/token",service="harbor-registry"`` when none was.
  ``GET``/``HEAD /v2/<project>/<repo…>/manifests/<ref>`` → 200 with a small OCI manifest
  (``application/vnd.oci.image.manifest.v1+json``, ``Docker-Content-Digest``) when the
  principal may pull from ``<project>``. As in Harbor, a request *without* an
  ``Authorization`` header always gets the 401 Bearer challenge (even for a public
  project: clients then fetch an anonymous token); with a header, a principal without
  pull gets 401 ``UNAUTHORIZED`` with ``Basic realm="harbor"`` (Harbor answers 401, never
  403, on ``/v2/``), and an unknown project 401 with an empty challenge. Every 200 and
  401 carries ``Docker-Distribution-Api-Version: registry/2.0``.
- ``GET /service/token?service=harbor-registry&scope=repository:<name>:pull[,push]``
  (``core/service/token``): basic credentials optional (wrong ones = anonymous);
  anonymous without a scope → 401; otherwise 200 ``{token, expires_in: 1800,
  issued_at}`` granting the requested actions the principal has. A token is honoured on
  ``/v2/`` until it expires, whatever happens to its robot meanwhile (Harbor authorizes
  token requests from the token's claims, not the database).
- Every response carries ``X-Request-Id``; errors are ``{"errors":[{code, message}]}``.

Fault knobs (``HarborFake.faults``): ``fail_next`` (500/503/429 with ``Retry-After``...),
``delay_next``, ``truncate_next``, ``drop_next``, ``garbage_next``; they apply to
``/api/`` requests in order (never to ``/v2/`` or ``/service/``). ``requests`` lists what
was received (no passwords). ``advance_clock`` moves the fake's clock (robot expiry,
token expiry).

- Repositories and artifacts (``listRepositories``, ``listArtifacts``), filled with
  :meth:`HarborFake.add_repository` / :meth:`HarborFake.add_repositories`:
  ``GET /api/v2.0/projects/{project_name}/repositories`` with ``q`` (``name=v`` exact,
  ``name=~v`` case-insensitive substring, as Harbor's ORM ``icontains``), ``sort``
  (``name``, ``creation_time``, ``update_time``, ``-`` for descending; default
  ``-creation_time``), ``page``/``page_size`` with ``X-Total-Count`` and ``Link`` as above;
  ``Repository`` items (``name`` includes the project, ``artifact_count``). ``GET
  .../repositories/{repository_name}/artifacts`` where ``repository_name`` is the name after
  the project with ``/`` encoded twice (``a%252Fb``; a single ``%2F`` does not match the
  route, as in Harbor), ``with_tag`` (default true), ``sort`` (default ``-push_time``), paging
  as above; ``Artifact`` items with ``digest``, ``size``, ``push_time`` and ``tags``. Access
  is Harbor's ``RequireProjectAccess``: an unknown project 404 first, then anonymous on a
  private project 401, then a principal without ``repository:list`` / ``artifact:list``
  403; an unknown repository 404.

Not modelled: pushing (any repository path and any reference in an existing project
"exists" for ``/v2/`` manifests; there is no blob, tag list or catalog), project
members and roles beyond "member may pull", project-admin users creating project robots,
``q=`` on ``/projects`` and ``sort`` anywhere, ``owner``, ``X-Is-Resource-Name``, project
creation/update/deletion over HTTP (use the Python methods), quotas, storage limits, CVE
allowlists, OIDC/LDAP/UAA auth modes, sessions and CSRF, robot v1 (legacy) accounts and
``/projects/{p}/robots``, a configurable ``robot_name_prefix`` (always ``robot$``),
permission ``effect`` other than as an opaque string, the full grantable-permission list
(a subset of Harbor's ``NolimitProvider``: see ``SYSTEM_ACCESS``/``PROJECT_ACCESS``),
token signatures (tokens are opaque random strings), ``systeminfo`` and ``health``.
Robot permissions refer to projects by id, as Harbor stores them: a project removed and
added again under the same name is a new project that the old grants do not cover.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
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

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USER",
    "MANIFEST_MEDIA_TYPE",
    "PROJECT_ACCESS",
    "SYSTEM_ACCESS",
    "HarborFake",
    "Principal",
    "RobotInfo",
    "RobotPermission",
]

ADMIN_USER = "admin"
ADMIN_PASSWORD = "Harbor12345"  # Harbor's well-known default; a fake, not a secret
ROBOT_PREFIX = "robot$"
MAX_PAGE_SIZE = 100
MANIFEST_MEDIA_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
TOKEN_SECONDS: Final = 1800  # Harbor's token_expiration default, 30 minutes
_CREATED = "2024-05-01T08:00:00.000Z"
_DAY = 86_400
_MAX_DURATION = 2**31 - 1  # isValidDuration: d == -1 || 0 < d < MaxInt32
_ROBOT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REGISTRY_API = {"Docker-Distribution-Api-Version": "registry/2.0"}

Access = tuple[str, str]  # (resource, action)

# A subset of Harbor's NolimitProvider (src/common/rbac/const.go): what a robot may be
# granted. robot:update is deliberately absent (removed in 2.12 "to prevent privilege
# escalation"), so no robot can ever PUT or PATCH robots.
SYSTEM_ACCESS: Final[frozenset[Access]] = frozenset(
    {
        ("robot", "create"),
        ("robot", "read"),
        ("robot", "list"),
        ("robot", "delete"),
        ("project", "list"),
        ("project", "create"),
        ("catalog", "read"),
        ("audit-log", "list"),
        ("registry", "read"),
        ("registry", "list"),
        ("quota", "read"),
        ("quota", "list"),
        ("label", "read"),
        ("scanner", "read"),
        ("user", "create"),
        ("user", "read"),
        ("user", "update"),
        ("user", "list"),
        ("user", "delete"),
    }
)
PROJECT_ACCESS: Final[frozenset[Access]] = frozenset(
    {
        ("repository", "pull"),
        ("repository", "push"),
        ("repository", "list"),
        ("repository", "read"),
        ("repository", "update"),
        ("repository", "delete"),
        ("artifact", "read"),
        ("artifact", "list"),
        ("artifact", "create"),
        ("artifact", "delete"),
        ("tag", "list"),
        ("tag", "create"),
        ("tag", "delete"),
        ("project", "read"),
        ("project", "update"),
        ("project", "delete"),
        ("metadata", "read"),
        ("metadata", "list"),
        ("scan", "create"),
        ("scan", "read"),
        ("robot", "create"),
        ("robot", "read"),
        ("robot", "list"),
        ("robot", "delete"),
        ("member", "read"),
        ("member", "list"),
        ("log", "list"),
    }
)
# getPoliciesForPublicProject (src/common/rbac/project/rbac_util.go), read-only part.
_PUBLIC_ACCESS: Final[frozenset[Access]] = frozenset(
    {
        ("repository", "pull"),
        ("repository", "list"),
        ("artifact", "read"),
        ("artifact", "list"),
        ("tag", "list"),
    }
)
_MEMBER_ACCESS: Final[frozenset[Access]] = _PUBLIC_ACCESS | {
    ("repository", "read"),
    ("project", "read"),
}
_MANIFEST = orjson.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "layers": [],
    }
)
_MANIFEST_DIGEST = "sha256:" + hashlib.sha256(_MANIFEST).hexdigest()


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


@dataclass(slots=True)
class _Artifact:
    id: int
    digest: str
    size: int
    pushed: float
    tags: tuple[str, ...]

    def to_json(self, repository: _Repository, with_tag: bool) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.id,
            "type": "IMAGE",
            "media_type": "application/vnd.oci.image.config.v1+json",
            "manifest_media_type": MANIFEST_MEDIA_TYPE,
            "project_id": repository.project_id,
            "repository_id": repository.id,
            "repository_name": repository.name,
            "digest": self.digest,
            "size": self.size,
            "push_time": _iso(self.pushed),
            "pull_time": "0001-01-01T00:00:00.000Z",
        }
        if with_tag:
            body["tags"] = [
                {
                    "id": self.id * 1000 + n,
                    "repository_id": repository.id,
                    "artifact_id": self.id,
                    "name": tag,
                    "push_time": _iso(self.pushed),
                    "pull_time": "0001-01-01T00:00:00.000Z",
                    "immutable": False,
                }
                for n, tag in enumerate(self.tags)
            ]
        return body


@dataclass(slots=True)
class _Repository:
    id: int
    project_id: int
    name: str  # with the project: "team-a/web"
    created: float
    artifacts: list[_Artifact] = field(default_factory=list)

    @property
    def updated(self) -> float:
        return max((a.pushed for a in self.artifacts), default=self.created)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "description": "",
            "artifact_count": len(self.artifacts),
            "pull_count": 0,
            "creation_time": _iso(self.created),
            "update_time": _iso(self.updated),
        }


@dataclass(frozen=True, slots=True)
class RobotPermission:
    """One ``RobotPermission`` as the API spells it, for :meth:`HarborFake.add_robot`.

    ``access`` entries are ``"resource:action"`` (``"repository:pull"``).
    """

    kind: Literal["system", "project"]
    namespace: str  # "/" for system; a project name or "*" for project
    access: tuple[str, ...]

    @classmethod
    def system(cls, *access: str) -> RobotPermission:
        """System permissions, e.g. ``RobotPermission.system("robot:create", "project:list")``."""
        return cls("system", "/", access)

    @classmethod
    def project(cls, namespace: str, *access: str) -> RobotPermission:
        """Permissions on one project (or ``"*"``); ``repository:pull`` when none given."""
        return cls("project", namespace, access or ("repository:pull",))

    def to_json(self) -> dict[str, object]:
        pairs = [a.split(":", 1) for a in self.access]
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "access": [{"resource": r, "action": a} for r, a in pairs],
        }


@dataclass(frozen=True, slots=True)
class _Grant:
    """A stored permission: scope ``"/"`` (system), ``"*"`` or a project id."""

    kind: str
    scope: int | str
    access: tuple[tuple[str, str, str], ...]  # (resource, action, effect)

    def allows(self, resource: str, action: str) -> bool:
        return any(r == resource and a == action for r, a, _ in self.access)


@dataclass(slots=True)
class _Robot:
    id: int
    name: str  # as stored: "ws-1" or "team-a+puller" (no prefix)
    secret: str = field(repr=False)
    level: str
    project_id: int  # 0 for system robots
    description: str
    grants: tuple[_Grant, ...]
    disabled: bool
    duration: int
    expires_at: int
    created: float
    updated: float
    creator_type: str
    creator_ref: int

    @property
    def login(self) -> str:
        return ROBOT_PREFIX + self.name


@dataclass(frozen=True, slots=True)
class Principal:
    """A user or robot account of the fake, as one request authenticated it."""

    name: str
    password: str = field(repr=False)
    admin: bool = False  # sysadmin user, or a robot that may list every project
    robot: bool = False
    member_of: frozenset[str] = frozenset()
    level: str = ""  # robots: "system" or "project"
    grants: tuple[_Grant, ...] = ()
    robot_id: int = 0


@dataclass(frozen=True, slots=True)
class RobotInfo:
    """A robot as :meth:`HarborFake.robots` shows it (never its secret)."""

    id: int
    name: str  # the login name, with "robot$"
    level: str
    description: str
    permissions: tuple[RobotPermission, ...]
    disabled: bool
    expires_at: int


@dataclass(frozen=True, slots=True)
class _Token:
    subject: str
    access: frozenset[tuple[str, str]]  # (repository name, action)
    expires: float


class _Problem(Exception):
    """An error answer raised inside a handler; turned into ``{"errors": [...]}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return _error(self.status, self.code, self.message)


class HarborFake(ServedFake):
    """A Harbor project and robot API plus a pull-only ``/v2/`` on ``127.0.0.1``; use as a
    context manager or start/stop.

    State changes (projects, accounts) are thread-safe and visible to the next request.
    """

    def __init__(self, *, admin_user: str = ADMIN_USER, admin_password: str = ADMIN_PASSWORD):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._robot_ids = itertools.count(1)
        self._projects: dict[str, _Project] = {}
        self._projects_by_id: dict[int, _Project] = {}
        self._sorted: list[_Project] | None = None
        self._principals: dict[str, Principal] = {}
        self._robots: dict[int, _Robot] = {}
        self._tokens: dict[str, _Token] = {}
        self._repositories: dict[str, dict[str, _Repository]] = {}
        self._repo_ids = itertools.count(1)
        self._clock_offset = 0.0
        self._admin = Principal(admin_user, admin_password, admin=True)
        self.faults = Faults()
        app = Starlette(
            routes=[
                Route("/api/v2.0/ping", self._ping),
                Route("/api/v2.0/projects", self._list_projects),
                Route("/api/v2.0/projects/{project_name}/repositories", self._list_repositories),
                Route(
                    "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts",
                    self._list_artifacts,
                ),
                Route("/api/v2.0/users/current", self._current_user),
                Route("/api/v2.0/users/current/permissions", self._current_permissions),
                Route("/api/v2.0/robots", self._robots_endpoint, methods=["GET", "POST"]),
                Route(
                    "/api/v2.0/robots/{robot_id:int}",
                    self._robot_endpoint,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
                Route("/v2/", self._v2_base),
                Route("/v2/{name:path}/manifests/{reference}", self._v2_manifest),
                Route("/service/token", self._token),
            ]
        )
        self._middleware = FaultMiddleware(app, self.faults, prefix="/api/")
        self._server = ServerThread(self._middleware, name="harbor-fake")
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Back to an empty Harbor with only the admin account; faults, robots, tokens,
        clock and log cleared (robot ids keep counting up, so stale ids stay unknown)."""
        with self._lock:
            self._projects.clear()
            self._projects_by_id.clear()
            self._sorted = None
            self._principals = {self._admin.name: self._admin}
            self._robots.clear()
            self._tokens.clear()
            self._repositories.clear()
            self._clock_offset = 0.0
        self.faults.clear()
        self._middleware.forget()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests received so far (method, path, query, auth scheme, username)."""
        return self._middleware.recorded()

    def now(self) -> float:
        """The fake's clock (epoch seconds), moved by :meth:`advance_clock`."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock forward: robots and tokens expire as if time had passed."""
        with self._lock:
            self._clock_offset += seconds

    # ------------------------------------------------------------------ state: projects

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
                project = _Project(next(self._ids), name, public, registry_id)
                self._projects[name] = project
                self._projects_by_id[project.project_id] = project
            self._sorted = None

    def set_public(self, name: str, public: bool) -> None:
        with self._lock:
            self._projects[name].public = public

    def add_repository(
        self,
        project: str,
        name: str,
        tags: Iterable[str] = ("latest",),
        *,
        size: int = 2_345_678,
        pushed: float | None = None,
    ) -> str:
        """A repository ``project/name`` with one artifact per tag; its full name."""
        self.add_repositories(project, [name], tags, size=size, pushed=pushed)
        return f"{project}/{name}"

    def add_repositories(
        self,
        project: str,
        names: Iterable[str],
        tags: Iterable[str] = ("latest",),
        *,
        size: int = 2_345_678,
        pushed: float | None = None,
    ) -> None:
        """Many repositories at once, each with one artifact (its own digest) per tag, the
        newest tag last; 2,000 × 20 take well under a second."""
        tag_list = tuple(tags)
        start = self.now() - 86_400 if pushed is None else pushed
        with self._lock:
            owner = self._project_named(project)
            repositories = self._repositories.setdefault(project, {})
            for name in names:
                full = f"{project}/{name}"
                repository = _Repository(next(self._repo_ids), owner.project_id, full, start)
                for n, tag in enumerate(tag_list):
                    digest = "sha256:" + hashlib.sha256(f"{full}:{tag}".encode()).hexdigest()
                    repository.artifacts.append(
                        _Artifact(repository.id * 10_000 + n, digest, size + n, start + n, (tag,))
                    )
                repositories[full] = repository

    def digest_of(self, repository: str, tag: str) -> str:
        """The digest the fake gives ``tag`` of ``repository`` (``project/name``)."""
        return "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()

    def remove_project(self, name: str) -> None:
        """Delete a project; robot permissions on it are hidden and no longer apply."""
        with self._lock:
            project = self._projects.pop(name)
            del self._projects_by_id[project.project_id]
            self._sorted = None

    # ------------------------------------------------------------------ state: accounts

    def add_user(
        self, name: str, password: str, *, admin: bool = False, member_of: Iterable[str] = ()
    ) -> None:
        """A local user; ``admin`` makes it a system admin (sees and may do everything).
        A member of a project may pull from it."""
        with self._lock:
            self._principals[name] = Principal(name, password, admin, False, frozenset(member_of))

    def add_robot(
        self,
        name: str,
        secret: str,
        *,
        project: str | None = None,
        permissions: Iterable[RobotPermission] | None = None,
        disabled: bool = False,
        expires_at: int = -1,
        description: str = "",
    ) -> str:
        """A robot account with a known secret; returns the login name Harbor gives it.

        Without ``project``: a system robot (``robot$<name>``) holding ``permissions``, by
        default only system ``project:list`` (it sees every project but may pull nothing).
        With ``project``: a project robot (``robot$<project>+<name>``) with ``permissions``
        on that project only, by default ``repository:pull``. Permissions are validated
        like the API does (``ValueError`` with Harbor's message); named projects must
        exist. A robot of the same login name is replaced.
        """
        if permissions is None:
            permissions = (
                [RobotPermission.system("project:list")]
                if project is None
                else [RobotPermission.project(project)]
            )
        body = [p.to_json() for p in permissions]
        level = "system" if project is None else "project"
        try:
            _validate_robot(-1, level, body)
            with self._lock:
                project_id = 0
                stored = name
                if project is not None:
                    if any(p.get("namespace") != project for p in body):
                        raise ValueError(f"a robot of project {project!r} holds only its project")
                    project_id = self._project_named(project).project_id
                    stored = f"{project}+{name}"
                grants = self._resolve(body)
                for other in list(self._robots.values()):
                    if other.name == stored and other.project_id == project_id:
                        del self._robots[other.id]
                self._store_robot(
                    stored,
                    secret,
                    level,
                    project_id,
                    description,
                    grants,
                    disabled=disabled,
                    duration=-1,
                    expires_at=expires_at,
                    creator=("local", 1),
                )
        except _Problem as problem:
            raise ValueError(problem.message) from None
        return ROBOT_PREFIX + stored

    def robots(self) -> list[RobotInfo]:
        """Every robot (system and project level), ordered by login name."""
        with self._lock:
            robots = sorted(self._robots.values(), key=lambda r: r.name)
            return [
                RobotInfo(
                    id=r.id,
                    name=r.login,
                    level=r.level,
                    description=r.description,
                    permissions=tuple(
                        RobotPermission(
                            "system" if p["kind"] == "system" else "project",
                            str(p["namespace"]),
                            tuple(f"{a['resource']}:{a['action']}" for a in _dicts(p["access"])),
                        )
                        for p in self._permissions_json(r)
                    ),
                    disabled=r.disabled,
                    expires_at=r.expires_at,
                )
                for r in robots
            ]

    def update_robot(
        self, login: str, *, disabled: bool | None = None, expires_at: int | None = None
    ) -> None:
        """Disable/enable a robot or set its expiry (epoch seconds, -1 = never)."""
        with self._lock:
            robot = self._robot_by_login(login)
            if robot is None:
                raise KeyError(login)
            if disabled is not None:
                robot.disabled = disabled
            if expires_at is not None:
                robot.expires_at = expires_at

    def remove_robot(self, login: str) -> None:
        with self._lock:
            robot = self._robot_by_login(login)
            if robot is None:
                raise KeyError(login)
            del self._robots[robot.id]

    def robot_can_pull(self, login: str, project: str) -> bool:
        """Whether ``login`` (authenticating now, so disabled/expired = anonymous) may pull
        from ``project`` with basic auth, exactly as ``/v2/`` decides."""
        with self._lock:
            robot = self._robot_by_login(login)
            principal = self._robot_principal(robot) if robot and self._active(robot) else None
            target = self._projects.get(project)
            return target is not None and self._can_project(principal, target, "repository", "pull")

    # ------------------------------------------------------------------ internals (locked)

    def _project_named(self, name: str) -> _Project:
        project = self._projects.get(name)
        if project is None:
            raise _Problem(404, "NOT_FOUND", f"project {name} not found")
        return project

    def _resolve(self, permissions: list[dict[str, object]]) -> tuple[_Grant, ...]:
        """``toScope`` for each permission; caller holds the lock."""
        grants = []
        for perm in permissions:
            kind, namespace = perm.get("kind"), perm.get("namespace")
            access = tuple(
                (str(a.get("resource", "")), str(a.get("action", "")), str(a.get("effect") or ""))
                for a in _dicts(perm.get("access"))
            )
            if kind == "system":
                if namespace != "/":
                    raise _Problem(400, "BAD_REQUEST", "unknown namespace")
                grants.append(_Grant("system", "/", access))
            elif namespace == "*":
                grants.append(_Grant("project", "*", access))
            else:
                project = self._project_named(str(namespace))
                grants.append(_Grant("project", project.project_id, access))
        return tuple(grants)

    def _store_robot(
        self,
        name: str,
        secret: str,
        level: str,
        project_id: int,
        description: str,
        grants: tuple[_Grant, ...],
        *,
        disabled: bool,
        duration: int,
        expires_at: int,
        creator: tuple[str, int],
    ) -> _Robot:
        now = self.now()
        robot = _Robot(
            id=next(self._robot_ids),
            name=name,
            secret=secret,
            level=level,
            project_id=project_id,
            description=description,
            grants=grants,
            disabled=disabled,
            duration=duration,
            expires_at=expires_at,
            created=now,
            updated=now,
            creator_type=creator[0],
            creator_ref=creator[1],
        )
        self._robots[robot.id] = robot
        return robot

    def _robot_by_login(self, login: str) -> _Robot | None:
        if not login.startswith(ROBOT_PREFIX):
            return None
        stored = login[len(ROBOT_PREFIX) :]
        return next((r for r in self._robots.values() if r.name == stored), None)

    def _active(self, robot: _Robot) -> bool:
        return not robot.disabled and (robot.expires_at == -1 or robot.expires_at > self.now())

    def _robot_principal(self, robot: _Robot) -> Principal:
        names: set[str] = set()
        lists_all = False
        for grant in robot.grants:
            if grant.kind == "system":
                lists_all |= robot.level == "system" and grant.allows("project", "list")
            elif grant.scope == "*":
                lists_all = True
            elif isinstance(grant.scope, int) and grant.scope in self._projects_by_id:
                names.add(self._projects_by_id[grant.scope].name)
        return Principal(
            robot.login,
            robot.secret,
            admin=lists_all,
            robot=True,
            member_of=frozenset(names),
            level=robot.level,
            grants=robot.grants,
            robot_id=robot.id,
        )

    def _permissions_json(self, robot: _Robot) -> list[dict[str, object]]:
        """Permissions grouped by scope as ``populatePermissions`` returns them; grants on
        deleted projects are left out."""
        grouped: dict[tuple[str, int | str], list[tuple[str, str, str]]] = {}
        for grant in robot.grants:
            if isinstance(grant.scope, int) and grant.scope not in self._projects_by_id:
                continue
            grouped.setdefault((grant.kind, grant.scope), []).extend(grant.access)
        result: list[dict[str, object]] = []
        for (kind, scope), access in grouped.items():
            namespace = self._projects_by_id[scope].name if isinstance(scope, int) else scope
            result.append(
                {
                    "kind": kind,
                    "namespace": namespace,
                    "access": [{"resource": r, "action": a, "effect": e} for r, a, e in access],
                }
            )
        return result

    def _robot_json(self, robot: _Robot) -> dict[str, object]:
        return {
            "id": robot.id,
            "name": robot.login,
            "description": robot.description,
            "expires_at": robot.expires_at,
            "duration": robot.duration,
            "level": robot.level,
            "disable": robot.disabled,
            "editable": True,
            "creator_type": robot.creator_type,
            "creator_ref": robot.creator_ref,
            "creation_time": _iso(robot.created),
            "update_time": _iso(robot.updated),
            "permissions": self._permissions_json(robot),
        }

    def _can_system(self, principal: Principal | None, resource: str, action: str) -> bool:
        if principal is None:
            return False
        if not principal.robot:
            return principal.admin
        return principal.level == "system" and any(
            g.kind == "system" and g.allows(resource, action) for g in principal.grants
        )

    def _can_project(
        self, principal: Principal | None, project: _Project, resource: str, action: str
    ) -> bool:
        public = project.public and (resource, action) in _PUBLIC_ACCESS
        if principal is None:
            return public
        if not principal.robot:
            return (
                principal.admin
                or public
                or (project.name in principal.member_of and (resource, action) in _MEMBER_ACCESS)
            )
        grants = [
            g
            for g in principal.grants
            if g.kind == "project" and (g.scope == "*" or g.scope in self._projects_by_id)
        ]
        if principal.level == "system" and not grants:
            return False  # Harbor builds no project evaluator for such a robot
        if public:
            return True
        for grant in grants:
            if grant.scope not in ("*", project.project_id):
                continue
            if grant.allows(resource, action):
                return True
            push_pulls = principal.level == "project" and (resource, action) == (
                "repository",
                "pull",
            )
            if push_pulls and grant.allows("repository", "push"):
                return True
        return False

    # ------------------------------------------------------------------ handlers: auth

    def _principal(self, request: Request) -> Principal | None:
        creds = basic_auth(request.headers.get("authorization"))
        if creds is None:
            return None
        username, password = creds
        with self._lock:
            if username.startswith(ROBOT_PREFIX):
                robot = self._robot_by_login(username)
                if robot is None or robot.secret != password or not self._active(robot):
                    return None  # Harbor falls through to the unauthenticated context
                return self._robot_principal(robot)
            principal = self._principals.get(username)
        if principal is None or principal.password != password:
            return None  # Harbor falls through to the unauthenticated context
        return principal

    def _require_system(self, principal: Principal | None, action: str) -> None:
        """``RequireSystemAccess(action, robot)``: 401 anonymous, 403 without it."""
        if principal is None:
            raise _Problem(401, "UNAUTHORIZED", "unauthorized")
        with self._lock:
            allowed = self._can_system(principal, "robot", action)
        if not allowed:
            raise _Problem(403, "FORBIDDEN", principal.name)

    def _require_project(
        self, principal: Principal | None, project: _Project | None, action: str
    ) -> None:
        """``RequireProjectAccess(project, action, robot)``; an unknown project is only
        passed by a sysadmin (who then meets the 404 of the handler)."""
        if principal is None:
            raise _Problem(401, "UNAUTHORIZED", "unauthorized")
        with self._lock:
            if project is None:
                allowed = principal.admin and not principal.robot
            else:
                allowed = self._can_project(principal, project, "robot", action)
        if not allowed:
            raise _Problem(403, "FORBIDDEN", principal.name)

    def _require_robot_access(
        self, principal: Principal | None, robot: _Robot, action: str
    ) -> None:
        if robot.level == "system":
            self._require_system(principal, action)
        else:
            with self._lock:
                project = self._projects_by_id.get(robot.project_id)
            self._require_project(principal, project, action)

    # ------------------------------------------------------------------ handlers: API

    async def _ping(self, request: Request) -> Response:
        return PlainTextResponse("Pong", headers=_request_id())

    async def _current_user(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            return _error(401, "UNAUTHORIZED", "unauthorized")
        if principal.robot:
            return _error(
                412,
                "PRECONDITION",
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
            page, page_size = _paging(params)
        except _Problem as problem:
            return problem.response()
        public = _bool(params.get("public"))
        if public == "invalid":
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                f"validation failure list:\npublic in query must be of type boolean: "
                f'"{params["public"]}"',
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
            p
            for p in everything
            if (public is None or p.public == public)
            and (name is None or name in p.name)
            and (principal is None or principal.admin or p.public or p.name in principal.member_of)
        ]
        return _page_response(request, query, [p.to_json() for p in matches], page, page_size)

    def _project_access(self, request: Request, resource: str) -> _Project:
        """``RequireProjectAccess(list, resource)``: 404, then 401 anonymous, then 403."""
        principal = self._principal(request)
        with self._lock:
            project = self._projects.get(request.path_params["project_name"])
            if project is None:
                name = request.path_params["project_name"]
                raise _Problem(404, "NOT_FOUND", f"project {name} not found")
            allowed = self._can_project(principal, project, resource, "list")
        if not allowed:
            if principal is None:
                raise _Problem(401, "UNAUTHORIZED", "unauthorized")
            raise _Problem(403, "FORBIDDEN", "forbidden")
        return project

    async def _list_repositories(self, request: Request) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        params = dict(query)
        try:
            page, page_size = _paging(params)
            project = self._project_access(request, "repository")
            keywords = _parse_q(params.get("q", ""))
            order = _sort_key(params.get("sort") or "-creation_time", _REPOSITORY_SORTS)
        except _Problem as problem:
            return problem.response()
        with self._lock:
            found = list(self._repositories.get(project.name, {}).values())
        if "name" in keywords:
            kind, value = keywords["name"]
            found = [r for r in found if _name_matches(r.name, kind, value)]
        field_name, descending = order
        found.sort(key=lambda r: (getattr(r, field_name), r.id), reverse=descending)
        return _page_response(request, query, [r.to_json() for r in found], page, page_size)

    async def _list_artifacts(self, request: Request) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        params = dict(query)
        try:
            page, page_size = _paging(params)
            project = self._project_access(request, "artifact")
        except _Problem as problem:
            return problem.response()
        rest = unquote(request.path_params["repository_name"])  # the second decoding
        full = f"{project.name}/{rest}"
        with self._lock:
            repository = self._repositories.get(project.name, {}).get(full)
        if repository is None:
            return _error(404, "NOT_FOUND", f"repository {full} not found")
        with_tag = _bool(params.get("with_tag")) is not False
        artifacts = sorted(
            repository.artifacts,
            key=lambda a: (a.pushed, a.id),
            reverse=(params.get("sort") or "-push_time").startswith("-"),
        )
        items = [a.to_json(repository, with_tag) for a in artifacts]
        return _page_response(request, query, items, page, page_size)

    async def _robots_endpoint(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self._create_robot(request)
            return self._list_robots(request)
        except _Problem as problem:
            return problem.response()

    async def _robot_endpoint(self, request: Request) -> Response:
        robot_id: int = request.path_params["robot_id"]
        try:
            principal = self._principal(request)
            if principal is None:
                raise _Problem(401, "UNAUTHORIZED", "unauthorized")
            with self._lock:
                robot = self._robots.get(robot_id)
            if robot is None:
                raise _Problem(404, "NOT_FOUND", f"robot {robot_id} not found")
            if request.method == "GET":
                self._require_robot_access(principal, robot, "read")
                with self._lock:
                    return _json(self._robot_json(robot))
            if request.method == "DELETE":
                self._require_robot_access(principal, robot, "delete")
                with self._lock:
                    self._robots.pop(robot_id, None)
                return Response(status_code=200, headers=_request_id())
            body = await _json_body(request, "robot" if request.method == "PUT" else "robotSec")
            if request.method == "PUT":
                self._update_robot(principal, robot, body)
                return Response(status_code=200, headers=_request_id())
            return self._refresh_secret(principal, robot, body)
        except _Problem as problem:
            return problem.response()

    async def _create_robot(self, request: Request) -> Response:
        body = await _json_body(request, "robot")
        name = body.get("name")
        if not isinstance(name, str) or not _ROBOT_NAME.match(name):
            raise _Problem(
                400,
                "BAD_REQUEST",
                "robot name is not in lower case or contains illegal characters",
            )
        level = body.get("level")
        duration = body.get("duration", 0)
        permissions = _validate_robot(duration, level, body.get("permissions"))
        assert isinstance(level, str) and isinstance(duration, int)
        principal = self._principal(request)
        first_namespace = str(permissions[0].get("namespace"))
        if level == "system":
            self._require_system(principal, "create")
        else:
            with self._lock:
                project = self._projects.get(first_namespace)
            self._require_project(principal, project, "create")
        assert principal is not None
        if principal.robot:
            with self._lock:
                robot = self._robots.get(principal.robot_id)
                own = self._permissions_json(robot) if robot else []
            if not _within(permissions, own):
                raise _Problem(
                    403,
                    "DENIED",
                    "permission scope is invalid. It must be equal to or more restrictive "
                    f"than the creator robot's permissions: {principal.name}",
                )
        description = body.get("description")
        with self._lock:
            project_id, stored = 0, name
            if level == "project":
                project_id = self._project_named(first_namespace).project_id
                stored = f"{first_namespace}+{name}"
            if any(r.name == stored and r.project_id == project_id for r in self._robots.values()):
                raise _Problem(
                    409, "CONFLICT", f"robot account {project_id}:{stored} already exists"
                )
            grants = self._resolve(permissions)
            expires_at = -1 if duration == -1 else int(self.now()) + duration * _DAY
            robot = self._store_robot(
                stored,
                _generate_secret(),
                level,
                project_id,
                description if isinstance(description, str) else "",
                grants,
                disabled=False,  # CreateRobot never copies "disable"
                duration=duration,
                expires_at=expires_at,
                creator=("robot", principal.robot_id) if principal.robot else ("local", 1),
            )
        location = f"{request.url.path.rstrip('/')}/{robot.id}"
        return _json(
            {
                "id": robot.id,
                "name": robot.login,
                "secret": robot.secret,
                "creation_time": _iso(robot.created),
                "expires_at": robot.expires_at,
            },
            status=201,
            headers={"Location": location},
        )

    def _list_robots(self, request: Request) -> Response:
        principal = self._principal(request)
        if principal is None:
            raise _Problem(401, "UNAUTHORIZED", "unauthorized")
        query = parse_qsl(request.url.query, keep_blank_values=True)
        params = dict(query)
        page, page_size = _paging(params)
        keywords = _parse_q(params.get("q", ""))
        level, project_id = "system", 0
        if "Level" in keywords:
            level = keywords["Level"][1]
            if level not in ("system", "project"):
                raise _Problem(400, "BAD_REQUEST", "bad request error level input")
            if level == "project":
                if "ProjectID" not in keywords:
                    raise _Problem(
                        400, "BAD_REQUEST", "must with project ID when to query project robots"
                    )
                raw = keywords["ProjectID"][1]
                project_id = int(raw) if raw.isdigit() else 0
                if project_id <= 0:
                    raise _Problem(400, "BAD_REQUEST", "ProjectID must be a positive integer")
        if level == "system":
            self._require_system(principal, "list")
        else:
            with self._lock:
                project = self._projects_by_id.get(project_id)
            self._require_project(principal, project, "list")
        name = keywords.get("name") or keywords.get("Name")
        with self._lock:
            matches = sorted(
                (
                    r
                    for r in self._robots.values()
                    if r.level == level
                    and r.project_id == project_id
                    and (name is None or _name_matches(r.name, *name))
                ),
                key=lambda r: r.name,
            )
            items = [self._robot_json(r) for r in matches]
        return _page_response(request, query, items, page, page_size)

    def _update_robot(self, principal: Principal, robot: _Robot, body: dict[str, object]) -> None:
        """``updateV2Robot``, in Harbor's order of checks."""
        duration = body.get("duration")
        if duration is None:
            duration = robot.duration
        level = body.get("level")
        permissions = _validate_robot(duration, level, body.get("permissions"))
        assert isinstance(duration, int)
        if robot.level != "system":
            with self._lock:
                project = self._project_named(str(permissions[0].get("namespace")))
            if project.project_id != robot.project_id:
                raise _Problem(400, "BAD_REQUEST", "cannot update the project id of robot")
        self._require_robot_access(principal, robot, "update")
        if level != robot.level or body.get("name") != robot.login:
            raise _Problem(400, "BAD_REQUEST", "cannot update the level or name of robot")
        with self._lock:
            grants = self._resolve(permissions)
            if duration != robot.duration:
                robot.duration = duration
                robot.expires_at = -1 if duration == -1 else int(robot.created) + duration * _DAY
            description = body.get("description")
            robot.description = description if isinstance(description, str) else ""
            robot.disabled = body.get("disable") is True
            robot.grants = grants
            robot.updated = self.now()

    def _refresh_secret(
        self, principal: Principal, robot: _Robot, body: dict[str, object]
    ) -> Response:
        self._require_robot_access(principal, robot, "update")
        chosen = body.get("secret") or ""
        if not isinstance(chosen, str):
            raise _Problem(400, "BAD_REQUEST", "secret must be a string")
        if chosen and not _valid_secret(chosen):
            raise _Problem(
                400,
                "BAD_REQUEST",
                "the secret must be 8-128, inclusively, characters long with at least 1 "
                "uppercase letter, 1 lowercase letter and 1 number",
            )
        secret = chosen or _generate_secret()
        with self._lock:
            robot.secret = secret
            robot.updated = self.now()
        return _json({"secret": "" if chosen else secret})

    # ------------------------------------------------------------------ handlers: registry

    def _registry_context(self, request: Request) -> tuple[bool, Principal | None, _Token | None]:
        """(Authorization header sent, basic principal, valid bearer token)."""
        header = request.headers.get("authorization")
        if header and header[:7].lower() == "bearer ":
            with self._lock:
                token = self._tokens.get(header[7:].strip())
                if token is not None and token.expires <= self.now():
                    token = None
            return True, None, token
        return bool(header), self._principal(request), None

    def _challenge(self, request: Request, sent: bool, scope: str = "") -> str:
        if sent:
            return 'Basic realm="harbor"'
        realm = f"{str(request.base_url).rstrip('/')}/service/token"
        challenge = f'Bearer realm="{realm}",service="harbor-registry"'
        return f'{challenge},scope="{scope}"' if scope else challenge

    async def _v2_base(self, request: Request) -> Response:
        sent, principal, token = self._registry_context(request)
        if principal is None and token is None:
            return _error(
                401,
                "UNAUTHORIZED",
                "unauthorized: unauthorized",
                headers={**_REGISTRY_API, "WWW-Authenticate": self._challenge(request, sent)},
            )
        return _json({}, headers=_REGISTRY_API)

    async def _v2_manifest(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        scope = f"repository:{name}:pull"
        sent, principal, token = self._registry_context(request)
        if not sent:  # Harbor #11271: GET/HEAD on a repository needs an Authorization header
            return _error(
                401,
                "UNAUTHORIZED",
                "authorize header needed to send HEAD to repository",
                headers={
                    **_REGISTRY_API,
                    "WWW-Authenticate": self._challenge(request, sent, scope),
                },
            )
        project_name = name.split("/", 1)[0]
        with self._lock:
            project = self._projects.get(project_name) if "/" in name else None
            if project is None:
                allowed = False
            elif token is not None:
                allowed = (name, "pull") in token.access
            else:
                allowed = self._can_project(principal, project, "repository", "pull")
        if project is None:
            message = f"project {project_name} not found"
            return _error(
                401,
                "UNAUTHORIZED",
                f"{message}: {message}",
                headers={**_REGISTRY_API, "WWW-Authenticate": ""},
            )
        if not allowed:
            return _error(
                401,
                "UNAUTHORIZED",
                f"unauthorized to access repository: {name}, action: pull",
                headers={**_REGISTRY_API, "WWW-Authenticate": self._challenge(request, sent)},
            )
        return Response(
            _MANIFEST,
            media_type=MANIFEST_MEDIA_TYPE,
            headers={
                **_REGISTRY_API,
                **_request_id(),
                "Docker-Content-Digest": _MANIFEST_DIGEST,
            },
        )

    async def _token(self, request: Request) -> Response:
        service = request.query_params.get("service", "")
        if service != "harbor-registry":
            return PlainTextResponse(f"Unable to handle service: {service}", status_code=400)
        scopes = [
            part
            for value in request.query_params.getlist("scope")
            for part in value.split(" ")
            if part
        ]
        principal = self._principal(request)
        if principal is None and not scopes:
            return PlainTextResponse("", status_code=401)
        granted: set[tuple[str, str]] = set()
        with self._lock:
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                project = self._projects.get(repo.split("/", 1)[0])
                if kind != "repository" or project is None or "/" not in repo:
                    continue
                for action in actions.split(","):
                    if action in ("pull", "push") and self._can_project(
                        principal, project, "repository", action
                    ):
                        granted.add((repo, action))
            now = self.now()
            value = secrets.token_urlsafe(24)
            self._tokens[value] = _Token(
                principal.name if principal else "", frozenset(granted), now + TOKEN_SECONDS
            )
        return _json({"token": value, "expires_in": TOKEN_SECONDS, "issued_at": _iso(now)})


# --------------------------------------------------------------------------- helpers


def _validate_robot(
    duration: object, level: object, permissions: object
) -> list[dict[str, object]]:
    """``robotAPI.validate``: raises the 400 Harbor answers; returns the permissions."""
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not (duration == -1 or 0 < duration < _MAX_DURATION)
    ):
        raise _Problem(
            400,
            "BAD_REQUEST",
            f"bad request error duration input: {duration}, duration must be either "
            "-1(Never) or a positive integer",
        )
    if level not in ("system", "project"):
        raise _Problem(400, "BAD_REQUEST", f"bad request error level input: {level or ''}")
    if not isinstance(permissions, list) or not permissions:
        raise _Problem(400, "BAD_REQUEST", "bad request empty permission")
    result: list[dict[str, object]] = []
    for perm in permissions:
        if not isinstance(perm, dict):
            raise _Problem(400, "BAD_REQUEST", "bad request empty permission")
        access = perm.get("access")
        if (
            not isinstance(access, list)
            or not access
            or not all(isinstance(a, dict) for a in access)
        ):
            raise _Problem(400, "BAD_REQUEST", "bad request empty access")
        result.append(perm)
    if level == "project" and len(result) > 1:
        raise _Problem(400, "BAD_REQUEST", "bad request permission")
    for perm in result:
        kind = perm.get("kind")
        grantable = {"system": SYSTEM_ACCESS, "project": PROJECT_ACCESS}.get(str(kind))
        if grantable is None:
            raise _Problem(400, "BAD_REQUEST", f"bad request permission level: {kind or ''}")
        for item in _dicts(perm.get("access")):
            pair = (str(item.get("resource", "")), str(item.get("action", "")))
            if pair not in grantable:
                raise _Problem(400, "BAD_REQUEST", f"bad request permission: {pair[0]}:{pair[1]}")
    return result


def _within(creating: list[dict[str, object]], creator: list[dict[str, object]]) -> bool:
    """``isValidPermissionScope``: ``creating`` equal to or narrower than ``creator``."""
    owned: dict[str, set[tuple[str, str, str]]] = {}
    for perm in creator:
        key = f"{perm['kind']}:{perm['namespace']}"
        owned.setdefault(key, set()).update(_triples(perm.get("access")))
    for perm in creating:
        kind = perm.get("kind")
        held = owned.get(f"{kind}:{perm.get('namespace')}")
        if held is None:
            held = owned.get(f"{kind}:*")
        if held is None or not _triples(perm.get("access")) <= held:
            return False
    return True


def _triples(access: object) -> set[tuple[str, str, str]]:
    return {
        (str(a.get("resource", "")), str(a.get("action", "")), str(a.get("effect") or ""))
        for a in _dicts(access)
    }


def _dicts(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _parse_q(q: str) -> dict[str, tuple[str, str]]:
    """Harbor's ``q``: ``k=v`` (exact) and ``k=~v`` (fuzzy), comma-separated, values
    optionally quoted. Ranges and lists are not modelled (400)."""
    keywords: dict[str, tuple[str, str]] = {}
    for part in filter(None, (p.strip() for p in q.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise _Problem(400, "BAD_REQUEST", f"invalid query string: {part}")
        kind = "exact"
        if value.startswith("~"):
            kind, value = "fuzzy", value[1:]
        elif value[:1] in ("[", "{", "("):
            raise _Problem(
                400, "BAD_REQUEST", f"the fake models only k=v and k=~v in q, not {part}"
            )
        keywords[key] = (kind, value.strip("\"'"))
    return keywords


_REPOSITORY_SORTS: Final = {
    "name": "name",
    "creation_time": "created",
    "update_time": "updated",
}


def _sort_key(sort: str, fields: dict[str, str]) -> tuple[str, bool]:
    """(attribute, descending) for one ``sort`` key; the fake models a single key."""
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in fields:
        raise _Problem(400, "BAD_REQUEST", f"the fake does not sort by {sort!r}")
    return fields[key], descending


def _name_matches(name: str, kind: str, value: str) -> bool:
    return value.lower() in name.lower() if kind == "fuzzy" else name == value


def _valid_secret(secret: str) -> bool:
    """``robot.IsValidSec``."""
    return (
        8 <= len(secret) <= 128
        and any(c.islower() for c in secret)
        and any(c.isupper() for c in secret)
        and any(c.isdigit() for c in secret)
    )


def _generate_secret() -> str:
    """``utils.GenerateRandomString`` retried until ``IsValidSec``: 32 letters/digits."""
    alphabet = string.ascii_letters + string.digits
    while True:
        secret = "".join(secrets.choice(alphabet) for _ in range(32))
        if _valid_secret(secret):
            return secret


async def _json_body(request: Request, what: str) -> dict[str, object]:
    """The JSON object body go-swagger binds, or its 400."""
    try:
        raw = await request.body()
    except ClientDisconnect:  # the client gave up (a timeout) before sending the body
        raise _Problem(400, "BAD_REQUEST", "client disconnected") from None
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise _Problem(400, "BAD_REQUEST", f'parsing {what} body from "" failed: {exc}') from None
    if not isinstance(body, dict):
        raise _Problem(400, "BAD_REQUEST", f"{what} in body is required")
    return body


def _paging(params: dict[str, str]) -> tuple[int, int]:
    try:
        page = int(params.get("page", "1"))
        page_size = int(params.get("page_size", "10"))
    except ValueError as exc:
        raise _Problem(422, "UNPROCESSABLE_ENTITY", f"validation failure list:\n{exc}") from None
    if page_size > MAX_PAGE_SIZE:
        raise _Problem(
            422,
            "UNPROCESSABLE_ENTITY",
            "validation failure list:\npage_size in query should be less than or equal "
            f"to {MAX_PAGE_SIZE}",
        )
    return max(page, 1), page_size


def _page_response(
    request: Request,
    query: list[tuple[str, str]],
    items: list[dict[str, object]],
    page: int,
    page_size: int,
) -> Response:
    total = len(items)
    selected = items[(page - 1) * page_size : page * page_size] if page_size > 0 else items
    headers = {"X-Total-Count": str(total)}
    link = _links(request.url.path, query, total, page, page_size)
    if link:
        headers["Link"] = link
    return _json(selected, headers=headers)


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


def _links(path: str, query: list[tuple[str, str]], total: int, page: int, page_size: int) -> str:
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


def _iso(epoch: float) -> str:
    """``strfmt.DateTime`` as Harbor serializes it: UTC, milliseconds, ``Z``."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _request_id() -> dict[str, str]:
    return {"X-Request-Id": str(uuid.uuid4())}


def _json(body: object, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**_request_id(), **(headers or {})},
    )


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"errors": [{"code": code, "message": message}]}) + b"\n"
    return Response(
        body,
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={**_request_id(), **(headers or {})},
    )
