"""The Harbor robot client: pull robots created, listed, deleted, and what they may pull.

Most tests run against :class:`tests.fakes.harbor.HarborFake` over real HTTP (its robot
rules are pinned by ``test_harbor_fake_robots.py``) and check the outcome where it matters:
a created robot's credential pulling a manifest through ``/v2/``. A few script exact
responses with ``httpx.MockTransport`` where the fake cannot misbehave that way.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake, RobotPermission
from tests.webhook.live.sources.conftest import FAST, RegistryFactory
from webhook.clients.errors import SourceError
from webhook.leader.provisioning.robots import (
    CreatedRobot,
    HarborRobots,
    Robot,
    RobotAccessDenied,
    RobotNameTaken,
    RobotOutcomeUnknown,
)

T = TypeVar("T")
ROBOTS = "/api/v2.0/robots"
MANAGER_SECRET = "Manager-Secret-1"
MANAGER = [
    RobotPermission.system(
        "robot:create", "robot:list", "robot:read", "robot:delete", "project:list"
    ),
    RobotPermission.project("team-a"),
    RobotPermission.project("team-b"),
]
TEAM_A = [RobotPermission.project("team-a")]
NEEDS = (
    "it needs to be a Harbor system admin, or a system robot with robot:create, robot:list, "
    "robot:read, robot:delete and project:list, and pull on the projects it delegates"
)


@pytest.fixture
def harbor(harbor: HarborFake) -> HarborFake:
    """The emptied fake with team-a, team-b, team-c private and library public."""
    for name in ("team-a", "team-b", "team-c"):
        harbor.add_project(name, public=False)
    harbor.add_project("library", public=True)
    return harbor


def client(
    harbor: HarborFake,
    registry_config: RegistryFactory,
    username: str | None = ADMIN_USER,
    password: str | None = ADMIN_PASSWORD,
    **options: Any,
) -> HarborRobots:
    registry = registry_config(harbor.url, "harbor", username, password)
    return HarborRobots(registry, **{**FAST, **options})


def manager_client(
    harbor: HarborFake,
    registry_config: RegistryFactory,
    permissions: list[RobotPermission] = MANAGER,
) -> HarborRobots:
    login = harbor.add_robot("manager", MANAGER_SECRET, permissions=permissions)
    return client(harbor, registry_config, login, MANAGER_SECRET)


def mocked(
    registry_config: RegistryFactory,
    handler: Callable[[httpx.Request], httpx.Response],
    password: str = ADMIN_PASSWORD,
    **options: Any,
) -> HarborRobots:
    registry = registry_config("https://harbor.example.com", "harbor", ADMIN_USER, password)
    transport = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HarborRobots(registry, client=transport, **{**FAST, **options})


def run(robots: HarborRobots, scenario: Callable[[HarborRobots], Awaitable[T]]) -> T:
    """``scenario(robots)`` in a fresh event loop, closing the client afterwards."""

    async def once() -> T:
        try:
            return await scenario(robots)
        finally:
            await robots.aclose()

    return asyncio.run(once())


def fails(
    robots: HarborRobots, scenario: Callable[[HarborRobots], Awaitable[object]]
) -> SourceError:
    with pytest.raises(SourceError) as info:
        run(robots, scenario)
    return info.value


def pulls(harbor: HarborFake, project: str, auth: tuple[str, str] | None) -> bool:
    """Whether a manifest of ``project`` can be pulled with basic auth (``None``: the
    anonymous token flow a container runtime uses without a pull secret)."""
    url = f"{harbor.url}/v2/{project}/app/manifests/latest"
    if auth is not None:
        return httpx.get(url, auth=auth).status_code == 200
    challenge = httpx.get(url)
    assert challenge.status_code == 401
    token = httpx.get(
        f"{harbor.url}/service/token",
        params={"service": "harbor-registry", "scope": f"repository:{project}/app:pull"},
    ).json()["token"]
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def posts(harbor: HarborFake) -> int:
    return sum(1 for r in harbor.requests if r.method == "POST" and r.path == ROBOTS)


# --------------------------------------------------------------------------- create, list, pull


def test_a_created_robot_is_listed_with_its_projects(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    async def scenario(robots: HarborRobots) -> tuple[CreatedRobot, list[Robot]]:
        created = await robots.create_robot("sg-ws-1", "workspace ws-1", ["team-b", "team-a"])
        return created, await robots.list_robots("sg-")

    created, listed = run(client(harbor, registry_config), scenario)

    assert created.name == "robot$sg-ws-1"
    assert [
        (r.id, r.name, r.description, r.projects, r.disabled, r.expires_at) for r in listed
    ] == [
        (created.id, "robot$sg-ws-1", "workspace ws-1", frozenset({"team-a", "team-b"}), False, -1),
    ]
    assert listed[0].creation_time.endswith("Z")
    [stored] = harbor.robots()
    assert stored.level == "system"
    assert stored.permissions == (
        RobotPermission.project("team-a"),
        RobotPermission.project("team-b"),
    )


def test_a_created_robot_pulls_from_each_granted_private_project_and_no_other(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    created = run(
        client(harbor, registry_config),
        lambda r: r.create_robot("sg-ws-1", "", ["team-a", "team-b"]),
    )
    auth = (created.name, created.secret)

    assert pulls(harbor, "team-a", auth)
    assert pulls(harbor, "team-b", auth)
    assert not pulls(harbor, "team-c", auth)
    assert pulls(harbor, "library", auth)
    assert not pulls(harbor, "team-a", None)
    assert pulls(harbor, "library", None)


def test_a_deleted_robot_is_gone_from_the_list_and_can_no_longer_pull(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    async def scenario(robots: HarborRobots) -> tuple[CreatedRobot, list[Robot], list[Robot]]:
        created = await robots.create_robot("sg-ws-1", "", ["team-a"])
        before = await robots.list_robots("sg-")
        await robots.delete_robot(created.id)
        await robots.delete_robot(created.id)  # already gone: fine
        return created, before, await robots.list_robots("sg-")

    created, before, after = run(client(harbor, registry_config), scenario)

    assert [r.name for r in before] == ["robot$sg-ws-1"]
    assert after == []
    assert not pulls(harbor, "team-a", (created.name, created.secret))


def test_only_robots_whose_name_starts_with_the_prefix_are_listed(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.add_robot("other-sg-ws-9", "Other-Secret-1", permissions=TEAM_A)
    harbor.add_robot("sg-ws-8", "Project-Secret-1", project="team-a")  # robot$team-a+sg-ws-8

    async def scenario(robots: HarborRobots) -> list[Robot]:
        for name in ("sg-ws-2", "sg-ws-1", "sgx-ws-3", "ci-pusher"):
            await robots.create_robot(name, "", ["team-a"])
        return await robots.list_robots("sg-ws-")

    listed = run(client(harbor, registry_config), scenario)

    assert [r.name for r in listed] == ["robot$sg-ws-1", "robot$sg-ws-2"]
    assert [r.query for r in harbor.requests if r.method == "GET"] == [
        "page=1&page_size=100&q=name%3D~sg-ws-"
    ]


def test_more_robots_than_a_page_holds_are_listed_across_pages(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    for i in range(23):
        harbor.add_robot(f"sg-{i:02d}", "Robot-Secret-1", permissions=TEAM_A)

    listed = run(client(harbor, registry_config, page_size=10), lambda r: r.list_robots("sg-"))

    assert [r.name for r in listed] == [f"robot$sg-{i:02d}" for i in range(23)]
    pages = [r.query for r in harbor.requests if r.path == ROBOTS]
    assert pages == [
        "page=1&page_size=10&q=name%3D~sg-",
        "page=2&page_size=10&q=name=~sg-",  # the Link header, unescaped as Harbor sends it
        "page=3&page_size=10&q=name=~sg-",
    ]


def test_duration_days_makes_the_robot_expire_after_that_many_days(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    async def scenario(robots: HarborRobots) -> tuple[CreatedRobot, list[Robot]]:
        created = await robots.create_robot("sg-ws-1", "", ["team-a"], duration_days=7)
        return created, await robots.list_robots("sg-")

    started = time.time()
    created, [listed] = run(client(harbor, registry_config), scenario)
    harbor.advance_clock(8 * 86400)

    assert started + 7 * 86400 - 5 <= listed.expires_at <= time.time() + 7 * 86400 + 5
    assert not pulls(harbor, "team-a", (created.name, created.secret))


# --------------------------------------------------------------------------- a manager robot


def test_a_manager_robot_creates_lists_and_deletes_narrower_robots(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    async def scenario(robots: HarborRobots) -> tuple[CreatedRobot, list[Robot], list[Robot]]:
        created = await robots.create_robot("sg-ws-1", "", ["team-a"])
        listed = await robots.list_robots("sg-")
        await robots.delete_robot(created.id)
        return created, listed, await robots.list_robots("")

    created, listed, after = run(manager_client(harbor, registry_config), scenario)

    assert [r.projects for r in listed] == [frozenset({"team-a"})]
    assert [r.name for r in after] == ["robot$manager"]
    assert not pulls(harbor, "team-a", (created.name, created.secret))


def test_a_manager_robot_that_creates_a_robot_which_then_pulls(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    created = run(
        manager_client(harbor, registry_config),
        lambda r: r.create_robot("sg-ws-1", "", ["team-a", "team-b"]),
    )

    assert pulls(harbor, "team-a", (created.name, created.secret))
    assert not pulls(harbor, "team-c", (created.name, created.secret))


def test_a_manager_robot_cannot_create_a_broader_robot_and_is_told_what_to_grant(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    error = fails(
        manager_client(harbor, registry_config),
        lambda r: r.create_robot("sg-ws-1", "", ["team-a", "team-c"]),
    )

    assert isinstance(error, RobotAccessDenied)
    assert str(error) == (
        "harbor 'main': the configured robot may only create robots whose permissions are "
        "within its own (403 DENIED: permission scope is invalid. It must be equal to or more "
        "restrictive than the creator robot's permissions: robot$manager on POST "
        "/api/v2.0/robots): give it repository:pull on team-a, team-c (or on all projects, "
        'namespace "*")'
    )
    assert [r.name for r in harbor.robots()] == ["robot$manager"]


@pytest.mark.parametrize(
    ("missing", "request_line"),
    [
        ("create", "POST /api/v2.0/robots"),
        ("list", "GET /api/v2.0/robots?page=1&page_size=100&q=name%3D~sg- (page 1)"),
        ("delete", "DELETE /api/v2.0/robots/{id}"),
    ],
)
def test_a_missing_permission_is_named_with_the_request_and_what_is_needed(
    harbor: HarborFake, registry_config: RegistryFactory, missing: str, request_line: str
) -> None:
    harbor.add_robot("sg-target", "Target-Secret-1", permissions=TEAM_A)
    target_id = harbor.robots()[0].id
    held = [a for a in MANAGER[0].access if a != f"robot:{missing}"]
    robots = manager_client(harbor, registry_config, [RobotPermission.system(*held), *MANAGER[1:]])

    async def scenario(robots: HarborRobots) -> object:
        if missing == "create":
            return await robots.create_robot("sg-ws-1", "", ["team-a"])
        if missing == "list":
            return await robots.list_robots("sg-")
        await robots.delete_robot(target_id)
        return None

    error = fails(robots, scenario)

    assert isinstance(error, RobotAccessDenied)
    assert str(error) == (
        f"harbor 'main': the configured account lacks robot:{missing}, so it may not {missing} "
        f"robots (403 FORBIDDEN: robot$manager on {request_line.format(id=target_id)}): {NEEDS}"
    )
    assert len(harbor.robots()) == 2


# --------------------------------------------------------------------------- refusals


def test_wrong_credentials_are_reported_as_not_accepted(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    error = fails(
        client(harbor, registry_config, ADMIN_USER, "wrong-password"), lambda r: r.list_robots("")
    )

    assert isinstance(error, RobotAccessDenied)
    assert str(error) == (
        "harbor 'main': the configured credentials were not accepted (401 UNAUTHORIZED: "
        "unauthorized on GET /api/v2.0/robots?page=1&page_size=100 (page 1)); check "
        "credentials.usernameFile and passwordFile"
    )


def test_without_credentials_nothing_is_sent(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    error = fails(
        client(harbor, registry_config, None, None),
        lambda r: r.create_robot("sg-ws-1", "", ["team-a"]),
    )

    assert isinstance(error, RobotAccessDenied)
    assert str(error).startswith("harbor 'main': cannot create robots anonymously: set credentials")
    assert harbor.requests == []


def test_a_taken_name_raises_robot_name_taken_so_the_caller_can_pick_another(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    async def scenario(robots: HarborRobots) -> None:
        await robots.create_robot("sg-ws-1", "", ["team-a"])
        await robots.create_robot("sg-ws-1", "", ["team-b"])

    error = fails(client(harbor, registry_config), scenario)

    assert isinstance(error, RobotNameTaken)
    assert error.name == "robot$sg-ws-1"
    assert str(error) == (
        "harbor 'main': a robot named 'robot$sg-ws-1' already exists (409 CONFLICT: robot "
        "account 0:sg-ws-1 already exists on POST /api/v2.0/robots); pick another name or "
        "delete the old robot"
    )


def test_an_unknown_project_is_reported_and_nothing_is_created(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    error = fails(
        client(harbor, registry_config), lambda r: r.create_robot("sg-ws-1", "", ["team-a", "gone"])
    )

    assert str(error) == (
        "harbor 'main': 404 NOT_FOUND: project gone not found on POST /api/v2.0/robots: a "
        "project among gone, team-a does not exist"
    )
    assert harbor.robots() == []


@pytest.mark.parametrize(
    ("name", "projects", "options", "message"),
    [
        ("sg-ws-1", ["team-a", "*"], {}, "refusing namespace '\\*'"),
        ("sg-ws-1", [], {}, "at least one project"),
        ("SG+ws", ["team-a"], {}, "robot name 'SG\\+ws' must match"),
        ("robot$sg", ["team-a"], {}, "must match"),
        ("sg-ws-1", ["team-a"], {"duration_days": 0}, "duration_days must be -1"),
        ("sg-ws-1", [""], {}, "project names must be non-empty"),
    ],
)
def test_requests_harbor_would_refuse_or_that_grant_too_much_are_refused_before_sending(
    harbor: HarborFake,
    registry_config: RegistryFactory,
    name: str,
    projects: list[str],
    options: dict[str, Any],
    message: str,
) -> None:
    robots = client(harbor, registry_config)

    with pytest.raises(ValueError, match=message):
        run(robots, lambda r: r.create_robot(name, "", projects, **options))

    assert harbor.requests == []


def test_a_prefix_that_no_robot_name_can_have_is_refused(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    with pytest.raises(ValueError, match="no robot\\$ prefix"):
        run(client(harbor, registry_config), lambda r: r.list_robots("robot$sg-"))


# --------------------------------------------------------------------------- retries


def test_a_5xx_on_create_is_not_retried_and_the_outcome_is_reported_unknown(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.fail_next(1, 503)

    error = fails(
        client(harbor, registry_config), lambda r: r.create_robot("sg-ws-1", "", ["team-a"])
    )

    assert isinstance(error, RobotOutcomeUnknown)
    assert error.name == "robot$sg-ws-1"
    assert str(error) == (
        "harbor 'main': 503 UNKNOWN: service unavailable on POST /api/v2.0/robots; not "
        "retried, creating is not idempotent: robot 'robot$sg-ws-1' may or may not exist "
        "now; list robots to find out"
    )
    assert posts(harbor) == 1


def test_a_read_timeout_on_create_is_not_retried(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    harbor.faults.delay_next(1, seconds=0.4)
    robots = client(harbor, registry_config, timeout=httpx.Timeout(2, read=0.1))

    error = fails(robots, lambda r: r.create_robot("sg-ws-1", "", ["team-a"]))

    assert isinstance(error, RobotOutcomeUnknown)
    assert "read timeout on POST /api/v2.0/robots; not retried" in str(error)
    assert posts(harbor) == 1


def test_a_robot_created_although_the_answer_was_lost_is_reported_as_unknown_not_created_twice(
    registry_config: RegistryFactory,
) -> None:
    created: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        created.append(orjson.loads(request.content)["name"])
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    error = fails(mocked(registry_config, handler), lambda r: r.create_robot("sg-ws-1", "", ["a"]))

    assert isinstance(error, RobotOutcomeUnknown)
    assert "connection dropped: peer closed connection on POST /api/v2.0/robots" in str(error)
    assert created == ["sg-ws-1"]


def test_a_refused_connection_on_create_is_retried_because_nothing_was_sent(
    registry_config: RegistryFactory,
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(
            201, json={"id": 7, "name": "robot$sg-ws-1", "secret": "S3cret-value"}
        )

    created = run(
        mocked(registry_config, handler), lambda r: r.create_robot("sg-ws-1", "", ["team-a"])
    )

    assert (created.id, created.name, created.secret) == (7, "robot$sg-ws-1", "S3cret-value")
    assert calls == ["POST", "POST"]


def test_listing_and_deleting_are_retried_on_5xx(
    harbor: HarborFake, registry_config: RegistryFactory
) -> None:
    robot = harbor.add_robot("sg-ws-1", "Robot-Secret-1", permissions=TEAM_A)
    robot_id = harbor.robots()[0].id

    async def scenario(robots: HarborRobots) -> list[Robot]:
        harbor.faults.fail_next(2, 500)
        listed = await robots.list_robots("sg-")
        harbor.faults.fail_next(1, 502)
        await robots.delete_robot(robot_id)
        return listed

    listed = run(client(harbor, registry_config), scenario)

    assert [r.name for r in listed] == [robot]
    assert harbor.robots() == []
    assert [r.method for r in harbor.requests] == ["GET"] * 3 + ["DELETE"] * 2


def test_a_delete_whose_answer_was_lost_counts_as_done_when_the_retry_finds_it_gone(
    registry_config: RegistryFactory,
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        error = {"code": "NOT_FOUND", "message": "robot 5 not found"}
        return httpx.Response(404, json={"errors": [error]})

    run(mocked(registry_config, handler), lambda r: r.delete_robot(5))

    assert calls == ["DELETE", "DELETE"]


def test_a_listing_that_changes_midway_is_listed_again(registry_config: RegistryFactory) -> None:
    def robot(i: int) -> dict[str, object]:
        return {"id": i, "name": f"robot$sg-{i}", "permissions": []}

    answers = [
        ([robot(1)], "3", '</api/v2.0/robots?page=2&page_size=1>; rel="next"'),
        ([robot(3)], "2", ""),  # robot 2 was deleted meanwhile: pages shifted
        ([robot(1)], "2", '</api/v2.0/robots?page=2&page_size=1>; rel="next"'),
        ([robot(3)], "2", ""),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        items, total, link = answers.pop(0)
        headers = {"X-Total-Count": total, **({"Link": link} if link else {})}
        return httpx.Response(200, json=items, headers=headers)

    listed = run(mocked(registry_config, handler, page_size=1), lambda r: r.list_robots(""))

    assert [r.id for r in listed] == [1, 3]
    assert answers == []


# --------------------------------------------------------------------------- secrets


SECRET = "Sup3r$ecret:PASSWORD-marker"


def _echo_credentials(request: httpx.Request) -> httpx.Response:
    echoed = f"bad login for {request.headers['authorization']} / {SECRET}"
    return httpx.Response(400, json={"errors": [{"code": "BAD_REQUEST", "message": echoed}]})


def _created_without_id(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"name": "robot$sg-ws-1", "secret": "Created-S3cret-marker"})


def _outcome_unknown_with_echo(request: httpx.Request) -> httpx.Response:
    echoed = f"upstream failed for {request.headers['authorization']}"
    return httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": echoed}]})


@pytest.mark.parametrize(
    "handler",
    [_echo_credentials, _created_without_id, _outcome_unknown_with_echo],
    ids=["400 echoing the credentials", "201 without an id", "500 echoing the credentials"],
)
def test_no_secret_appears_in_errors_or_logs(
    registry_config: RegistryFactory,
    caplog: pytest.LogCaptureFixture,
    handler: Callable[[httpx.Request], httpx.Response],
) -> None:
    robots = mocked(registry_config, handler, password=SECRET)

    error = fails(robots, lambda r: r.create_robot("sg-ws-1", "", ["team-a"]))

    header = base64.b64encode(f"{ADMIN_USER}:{SECRET}".encode()).decode()
    for text in (str(error), repr(error), caplog.text, repr(robots)):
        assert SECRET not in text
        assert header not in text
        assert "Sup3r" not in text
        assert "Created-S3cret" not in text
    assert str(error).startswith("harbor 'main': ")


def test_a_created_robots_secret_never_shows_in_its_repr_or_the_logs(
    harbor: HarborFake, registry_config: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(robots: HarborRobots) -> CreatedRobot:
        created = await robots.create_robot("sg-ws-1", "", ["team-a"])
        await robots.delete_robot(created.id)
        return created

    created = run(client(harbor, registry_config), scenario)

    assert created.secret
    assert repr(created) == f"CreatedRobot(id={created.id}, name='robot$sg-ws-1', secret=***)"
    assert created.secret not in str(created)
    assert created.secret not in caplog.text
    assert "created robot robot$sg-ws-1" in caplog.text


def test_the_request_body_is_a_system_robot_with_one_pull_permission_per_project(
    registry_config: RegistryFactory,
) -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(request.content))
        return httpx.Response(
            201, json={"id": 1, "name": "robot$sg-ws-1", "secret": "S3cret-value"}
        )

    run(
        mocked(registry_config, handler),
        lambda r: r.create_robot("sg-ws-1", "ws", ["b", "a", "b"]),
    )

    pull = [{"resource": "repository", "action": "pull"}]
    assert bodies == [
        {
            "name": "sg-ws-1",
            "description": "ws",
            "level": "system",
            "duration": -1,
            "disable": False,
            "permissions": [
                {"kind": "project", "namespace": "a", "access": pull},
                {"kind": "project", "namespace": "b", "access": pull},
            ],
        }
    ]
