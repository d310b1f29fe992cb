"""Manages the pull robots spacegate hands out for one Harbor: list, create, delete.

A pull robot is a Harbor **system-level** robot account (``level: system``) holding one
``kind: project`` permission with ``repository:pull`` per private project it may pull from:
since Harbor 2.2 a system robot may carry permissions on any list of projects, so one robot
serves a workspace however many projects are bound to it. It is never granted
``namespace: "*"``, which would cover every current and future project. Its login name is
``robot$<name>`` (Harbor's default ``robot_name_prefix``) and its secret is returned once,
by the create call.

The account in the registry's ``credentials`` does the managing. It must be either

- a Harbor **system admin** user, or
- a **system robot** ("manager robot", Harbor ≥ 2.12) with the system permissions
  ``robot:create``, ``robot:list``, ``robot:read``, ``robot:delete`` and ``project:list``,
  plus ``repository:pull`` on every project it delegates (or on ``*``): Harbor only lets a
  robot create robots whose permissions are equal to or narrower than its own.

A robot caller can never update robots (``robot:update`` is not grantable since 2.12), so
this client has no update: changing a robot's projects or secret is done by creating a new
robot, switching the pull Secret to it, then deleting the old one, which also rotates the
credential without a window where neither works.

Retries. Reads (``GET``) and deletes are idempotent and are retried like every other
registry request (connection failures, timeouts, 429 and 5xx, with backoff; see
:class:`~webhook.clients.http.RetryPolicy`); a repeated delete of a robot the first
attempt already removed answers 404, which counts as done. **Creating is not retried**
after the request may have reached Harbor (a 5xx, a read timeout, a dropped connection):
the robot may exist even though the answer was lost, a second POST would then fail with
409 or create a twin, and the secret of the first is gone for good. Such failures raise
:class:`RobotOutcomeUnknown`; the caller lists robots by name to find out, and deletes a
robot whose secret it never received. A create *is* retried when the connection could not
be opened at all (refused, connect or pool timeout): nothing was sent, so nothing can have
been created.

Errors are :class:`~webhook.clients.errors.SourceError` subclasses whose messages name the
registry, the request and, for 401/403, what the account lacks. No secret ever appears in
a message, a log line or a repr: neither the configured credential (masked with
``safe_text``) nor a created robot's secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import httpx
import orjson

from webhook.clients.credentials import BasicCredentials, load_credentials
from webhook.clients.errors import SourceError
from webhook.clients.harbor_paging import MAX_PAGE_SIZE, list_harbor
from webhook.clients.http import RegistrySource, error_detail, parse_json, safe_text

__all__ = [
    "ROBOTS_PATH",
    "CreatedRobot",
    "HarborRobots",
    "Robot",
    "RobotAccessDenied",
    "RobotNameTaken",
    "RobotOutcomeUnknown",
]

log = logging.getLogger(__name__)

ROBOTS_PATH: Final = "/api/v2.0/robots"
LOGIN_PREFIX: Final = "robot$"  # Harbor's default robot_name_prefix: login = prefix + name
MAX_DURATION_DAYS: Final = 2**31 - 2  # Harbor's isValidDuration: 0 < d < MaxInt32
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")  # Harbor's robot name rule
_PREFIX = re.compile(r"^[a-z0-9._-]*$")
_MASK = "***"
_MANAGER = (
    "it needs to be a Harbor system admin, or a system robot with robot:create, robot:list, "
    "robot:read, robot:delete and project:list, and pull on the projects it delegates"
)


class RobotAccessDenied(SourceError):
    """The configured account was not accepted (401) or lacks a permission (403)."""


class RobotNameTaken(SourceError):
    """Creating failed because a robot of that name exists (409); pick another name."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class RobotOutcomeUnknown(SourceError):
    """A create may or may not have happened (5xx, timeout or dropped connection after the
    request was sent); list robots by name to find out."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class Robot:
    """A system robot as Harbor lists it (never with its secret)."""

    id: int
    name: str  # the login name, with "robot$"
    description: str
    projects: frozenset[str]  # projects it may pull from; "*" (all) kept as "*"
    disabled: bool
    expires_at: int  # epoch seconds, -1 = never
    creation_time: str


@dataclass(frozen=True, slots=True)
class CreatedRobot:
    """A robot just created, with the only copy of its secret."""

    id: int
    name: str  # the login name, with "robot$"
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"CreatedRobot(id={self.id!r}, name={self.name!r}, secret={_MASK})"


class HarborRobots(RegistrySource):
    """The pull robots of one Harbor registry, managed with its configured account.

    Args:
        registry: the registry as declared in the config (``type: harbor``); its
            ``credentials`` are the managing account, read from their files on every call.
        client, timeout, retries, backoff, max_backoff, max_retry_after, sleep, rng: as for
            :class:`~webhook.live.sources.harbor.HarborSource`.
        page_size: robots per listing page, 1..100.
    """

    KIND = "harbor"
    MAX_PAGE_SIZE = MAX_PAGE_SIZE

    # Harbor's ``robot_name_prefix`` (its default); login names start with it.
    login_prefix = LOGIN_PREFIX

    # ------------------------------------------------------------------ public API

    async def list_robots(self, name_prefix: str) -> list[Robot]:
        """Every system robot whose login name starts with ``robot$`` + ``name_prefix``,
        ordered by name, across all pages.

        Harbor's ``q=name=~…`` is a substring match on the name without ``robot$``, so the
        result is filtered by prefix here too. When the total changes during a listing
        (robots created or deleted meanwhile, shifting the pages), it is listed again (twice
        at most), then the union of what was seen is returned.

        Raises:
            ValueError: ``name_prefix`` has characters Harbor robot names cannot have.
            SourceError: the listing failed (:class:`RobotAccessDenied` for 401/403).
        """
        if not _PREFIX.match(name_prefix):
            raise ValueError(
                f"name_prefix {name_prefix!r}: robot names have only a-z, 0-9, '.', '_', '-' "
                "(and no robot$ prefix)"
            )
        creds = self._credentials("list robots")
        wanted = self.login_prefix + name_prefix
        robots = await list_harbor(
            self._http,
            f"{self._base}{ROBOTS_PATH}",
            params={"q": f"name=~{name_prefix}"} if name_prefix else {},
            page_size=self._page_size,
            headers=self._headers(creds),
            secrets=creds.secrets,
            parse_page=self._robots,
            status_error=lambda response, what: self._status_error(response, what, creds, "list"),
            noun="robots",
        )
        return sorted(
            (r for r in robots.values() if r.name.startswith(wanted)), key=lambda r: r.name
        )

    async def create_robot(
        self,
        name: str,
        description: str,
        projects: Iterable[str],
        *,
        duration_days: int = -1,
    ) -> CreatedRobot:
        """Create ``robot$<name>``, a system robot that may pull from exactly ``projects``.

        ``duration_days`` is -1 (never expires) or a number of days from now.

        Raises:
            ValueError: an invalid name, no projects, ``"*"`` among them, or a bad duration.
            RobotNameTaken: a robot of that name exists (409).
            RobotAccessDenied: the account may not create robots, or not with these
                projects (a robot caller without pull on one of them).
            RobotOutcomeUnknown: the request was sent but no answer says what happened.
            SourceError: anything else (a project that does not exist: 404).
        """
        if not _NAME.match(name):
            raise ValueError(
                f"robot name {name!r} must match {_NAME.pattern} (lower case, digits and "
                "single '.', '_' or '-' between them)"
            )
        granted = sorted(set(projects))
        if not granted:
            raise ValueError("a pull robot needs at least one project (Harbor refuses none)")
        if "*" in granted:
            raise ValueError("refusing namespace '*': it grants pull on every project")
        if any(not p or "/" in p for p in granted):
            raise ValueError(f"project names must be non-empty and have no '/': {granted!r}")
        if duration_days != -1 and not 0 < duration_days <= MAX_DURATION_DAYS:
            raise ValueError(
                f"duration_days must be -1 (never expires) or 1..{MAX_DURATION_DAYS}, "
                f"got {duration_days}"
            )
        creds = self._credentials("create robots")
        body = {
            "name": name,
            "description": description,
            "level": "system",
            "duration": duration_days,
            "disable": False,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": project,
                    "access": [{"resource": "repository", "action": "pull"}],
                }
                for project in granted
            ],
        }
        login = self.login_prefix + name
        url = f"{self._base}{ROBOTS_PATH}"
        what = f"POST {ROBOTS_PATH}"
        response = await self._send(
            "POST", url, what=what, creds=creds, body=orjson.dumps(body), robot=login
        )
        status = response.status_code
        if status == 409:
            detail = error_detail(response, creds.secrets)
            raise RobotNameTaken(
                f"{self._label}: a robot named {login!r} already exists ({detail} on {what}); "
                "pick another name or delete the old robot",
                login,
            )
        if status == 403 and _error_code(response) == "DENIED":
            detail = error_detail(response, creds.secrets)
            raise RobotAccessDenied(
                f"{self._label}: the configured robot may only create robots whose permissions "
                f"are within its own ({detail} on {what}): give it repository:pull on "
                f'{", ".join(granted)} (or on all projects, namespace "*")'
            )
        if status == 404:
            detail = error_detail(response, creds.secrets)
            raise SourceError(
                f"{self._label}: {detail} on {what}: a project among {', '.join(granted)} "
                "does not exist"
            )
        if status != 201:
            raise self._status_error(response, what, creds, "create")
        created = self._created(response, what, login)
        log.info("%s: created robot %s (id %d)", self._label, created.name, created.id)
        return created

    async def delete_robot(self, robot_id: int) -> None:
        """Delete the robot with this id; one that is already gone (404) counts as deleted.

        Raises:
            RobotAccessDenied: the account may not delete robots.
            SourceError: anything else.
        """
        creds = self._credentials("delete robots")
        path = f"{ROBOTS_PATH}/{int(robot_id)}"
        what = f"DELETE {path}"
        response = await self._send("DELETE", f"{self._base}{path}", what=what, creds=creds)
        if response.status_code == 404:
            log.info("%s: robot %d was already gone", self._label, robot_id)
            return
        if response.status_code != 200:
            raise self._status_error(response, what, creds, "delete")
        log.info("%s: deleted robot %d", self._label, robot_id)

    # ------------------------------------------------------------------ listing

    def _robots(self, items: object, what: str) -> dict[int, Robot]:
        """One page's robots, by id."""
        if not isinstance(items, list):
            raise SourceError(
                f"{self._label}: expected a JSON array of robots in the response to {what}, "
                f"got {type(items).__name__}"
            )
        robots: dict[int, Robot] = {}
        for index, item in enumerate(items):
            robot = _robot(item)
            if robot is None:
                raise SourceError(
                    f"{self._label}: robot #{index} in the response to {what} lacks an id or a name"
                )
            robots[robot.id] = robot
        return robots

    # ------------------------------------------------------------------ requests

    def _credentials(self, doing: str) -> BasicCredentials:
        creds = load_credentials(self._registry, self._label)
        if creds is None:
            raise RobotAccessDenied(
                f"{self._label}: cannot {doing} anonymously: set credentials.usernameFile and "
                f"passwordFile; {_MANAGER}"
            )
        return creds

    @staticmethod
    def _headers(creds: BasicCredentials) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": creds.header}

    async def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        creds: BasicCredentials,
        body: bytes | None = None,
        robot: str = "",
    ) -> httpx.Response:
        """One request with the managing account: DELETE is retried like every registry
        request; POST only when it was never sent."""
        headers = self._headers(creds)
        if body is not None:
            headers["Content-Type"] = "application/json"
        return await self._http.request(
            method,
            url,
            what=what,
            headers=headers,
            secrets=creds.secrets,
            body=body,
            idempotent=method != "POST",
            uncertain=lambda problem: RobotOutcomeUnknown(
                _unknown(self._http.label, problem, robot), robot
            ),
        )

    def _created(self, response: httpx.Response, what: str, login: str) -> CreatedRobot:
        payload = parse_json(response, self._label, what)
        if not isinstance(payload, dict):
            payload = {}
        robot_id, name, secret = payload.get("id"), payload.get("name"), payload.get("secret")
        if (
            not isinstance(robot_id, int)
            or isinstance(robot_id, bool)
            or not isinstance(name, str)
            or not isinstance(secret, str)
            or not secret
        ):
            # Never echo the payload: it holds the secret.
            raise RobotOutcomeUnknown(
                f"{self._label}: the answer to {what} (201) lacks the robot's id, name or "
                f"secret; robot {login!r} exists without a usable secret: delete it",
                login,
            )
        return CreatedRobot(robot_id, name, secret)

    def _status_error(
        self, response: httpx.Response, what: str, creds: BasicCredentials, action: str
    ) -> SourceError:
        detail = error_detail(response, creds.secrets)
        status = response.status_code
        if status == 401:
            return RobotAccessDenied(
                f"{self._label}: the configured credentials were not accepted ({detail} on "
                f"{what}); check credentials.usernameFile and passwordFile"
            )
        if status == 403:
            return RobotAccessDenied(
                f"{self._label}: the configured account lacks robot:{action}, so it may not "
                f"{action} robots ({detail} on {what}): {_MANAGER}"
            )
        if 300 <= status < 400:
            target = safe_text(response.headers.get("location", "?"), creds.secrets, 200)
            return SourceError(
                f"{self._label}: {detail} on {what}, redirected to {target}; "
                "put the final URL in the config"
            )
        return SourceError(f"{self._label}: {detail} on {what}")


# --------------------------------------------------------------------------- helpers


def _unknown(label: str, problem: str, robot: str) -> str:
    return (
        f"{label}: {problem}; not retried, creating is not idempotent: robot "
        f"{robot!r} may or may not exist now; list robots to find out"
    )


def _error_code(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    code = first.get("code") if isinstance(first, dict) else None
    return code if isinstance(code, str) else ""


def _robot(item: object) -> Robot | None:
    """A :class:`Robot` from one ``Robot`` object of the listing, or None without id/name."""
    if not isinstance(item, dict):
        return None
    robot_id, name = item.get("id"), item.get("name")
    if isinstance(robot_id, bool) or not isinstance(robot_id, int) or not isinstance(name, str):
        return None
    projects: set[str] = set()
    permissions = item.get("permissions")
    for perm in permissions if isinstance(permissions, list) else ():
        if not isinstance(perm, dict) or perm.get("kind") != "project":
            continue
        namespace, access = perm.get("namespace"), perm.get("access")
        pulls = isinstance(access, list) and any(
            isinstance(a, dict) and a.get("resource") == "repository" and a.get("action") == "pull"
            for a in access
        )
        if pulls and isinstance(namespace, str) and namespace:
            projects.add(namespace)
    expires_at = item.get("expires_at")
    description, created = item.get("description"), item.get("creation_time")
    return Robot(
        id=robot_id,
        name=name,
        description=description if isinstance(description, str) else "",
        projects=frozenset(projects),
        disabled=item.get("disable") is True,
        expires_at=expires_at if isinstance(expires_at, int) else -1,
        creation_time=created if isinstance(created, str) else "",
    )
