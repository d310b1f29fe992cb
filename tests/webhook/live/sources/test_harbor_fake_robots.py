"""The Harbor fake's robot API and pull-only ``/v2/``: Harbor's rules, checked over HTTP.

These pin what the fake claims to model (``tests/fakes/harbor.py``), so that the robot
client's tests (``tests/webhook/leader/provisioning/test_robots.py``) test against Harbor's
behaviour, not the fake's accidents. Each rule names where Harbor has it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.harbor import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    MANIFEST_MEDIA_TYPE,
    HarborFake,
    RobotPermission,
)

ADMIN = (ADMIN_USER, ADMIN_PASSWORD)
ROBOTS = "/api/v2.0/robots"
MANAGER_SECRET = "Manager-Secret-1"
MANAGER = [
    RobotPermission.system(
        "robot:create", "robot:list", "robot:read", "robot:delete", "project:list"
    ),
    RobotPermission.project("team-a"),
    RobotPermission.project("team-b"),
]


def robot_body(name: str, *projects: str, **extra: Any) -> dict[str, Any]:
    """A system pull robot as spacegate creates it."""
    return {
        "name": name,
        "description": "test",
        "level": "system",
        "duration": -1,
        "disable": False,
        "permissions": [
            {
                "kind": "project",
                "namespace": project,
                "access": [{"resource": "repository", "action": "pull"}],
            }
            for project in projects
        ],
        **extra,
    }


def create(
    harbor: HarborFake, body: dict[str, Any], auth: tuple[str, str] | None = ADMIN
) -> httpx.Response:
    return httpx.post(f"{harbor.url}{ROBOTS}", json=body, auth=auth)


def created(harbor: HarborFake, name: str, *projects: str, **extra: Any) -> tuple[int, str, str]:
    """(id, login, secret) of a robot the admin created."""
    response = create(harbor, robot_body(name, *projects, **extra))
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["name"], body["secret"]


def pull(
    harbor: HarborFake,
    project: str,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.get(
        f"{harbor.url}/v2/{project}/tools/app/manifests/v1", auth=auth, headers=headers
    )


def error(response: httpx.Response) -> tuple[int, str, str]:
    item = response.json()["errors"][0]
    return response.status_code, item["code"], item["message"]


@pytest.fixture
def projects(harbor: HarborFake) -> HarborFake:
    """team-a, team-b, team-c private; library public."""
    for name in ("team-a", "team-b", "team-c"):
        harbor.add_project(name, public=False)
    harbor.add_project("library", public=True)
    return harbor


def manager(harbor: HarborFake, permissions: list[RobotPermission] = MANAGER) -> tuple[str, str]:
    return harbor.add_robot("manager", MANAGER_SECRET, permissions=permissions), MANAGER_SECRET


# --------------------------------------------------------------------------- create


def test_admin_creates_a_system_robot_for_several_projects_and_sees_its_secret_only_once(
    projects: HarborFake,
) -> None:
    response = create(projects, robot_body("ws-1", "team-a", "team-b"))

    body = response.json()
    assert response.status_code == 201
    assert set(body) == {"id", "name", "secret", "creation_time", "expires_at"}
    assert body["name"] == "robot$ws-1"
    assert body["expires_at"] == -1
    assert response.headers["location"] == f"{ROBOTS}/{body['id']}"
    assert len(body["secret"]) == 32
    read = httpx.get(f"{projects.url}{ROBOTS}/{body['id']}", auth=ADMIN).json()
    assert "secret" not in read
    assert body["secret"] not in str(read)
    assert (read["level"], read["disable"], read["editable"]) == ("system", False, True)
    assert [(p["kind"], p["namespace"]) for p in read["permissions"]] == [
        ("project", "team-a"),
        ("project", "team-b"),
    ]
    [info] = projects.robots()
    assert info.permissions == (
        RobotPermission.project("team-a"),
        RobotPermission.project("team-b"),
    )


def test_the_secret_in_the_request_is_ignored_as_harbor_does_at_head(projects: HarborFake) -> None:
    _, login, secret = created(projects, "ws-1", "team-a", secret="Chosen-Secret-1")

    assert secret != "Chosen-Secret-1"
    assert pull(projects, "team-a", auth=(login, "Chosen-Secret-1")).status_code == 401
    assert pull(projects, "team-a", auth=(login, secret)).status_code == 200


def test_a_duration_in_days_sets_expires_at_from_now(projects: HarborFake) -> None:
    before = int(projects.now())

    response = create(projects, robot_body("ws-1", "team-a", duration=3))

    assert before + 3 * 86400 <= response.json()["expires_at"] <= before + 3 * 86400 + 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "WS-1"}, "robot name is not in lower case or contains illegal characters"),
        ({"name": "team+ws"}, "robot name is not in lower case or contains illegal characters"),
        (
            {"duration": 0},
            "bad request error duration input: 0, duration must be either "
            "-1(Never) or a positive integer",
        ),
        (
            {"duration": None},
            "bad request error duration input: 0, duration must be "
            "either -1(Never) or a positive integer",
        ),  # absent: int64 zero
        ({"level": "global"}, "bad request error level input: global"),
        ({"permissions": []}, "bad request empty permission"),
        (
            {"permissions": [{"kind": "project", "namespace": "team-a", "access": []}]},
            "bad request empty access",
        ),
        ({"level": "project"}, "bad request permission"),  # two projects
        (
            {
                "permissions": [
                    {
                        "kind": "system",
                        "namespace": "/",
                        "access": [{"resource": "robot", "action": "update"}],
                    }
                ]
            },
            "bad request permission: robot:update",
        ),
        (
            {
                "permissions": [
                    {
                        "kind": "project",
                        "namespace": "team-a",
                        "access": [{"resource": "project", "action": "list"}],
                    }
                ]
            },
            "bad request permission: project:list",
        ),
        (
            {
                "permissions": [
                    {
                        "kind": "global",
                        "namespace": "/",
                        "access": [{"resource": "robot", "action": "list"}],
                    }
                ]
            },
            "bad request permission level: global",
        ),
        (
            {
                "permissions": [
                    {
                        "kind": "system",
                        "namespace": "team-a",
                        "access": [{"resource": "robot", "action": "list"}],
                    }
                ]
            },
            "unknown namespace",
        ),
    ],
)
def test_invalid_robots_are_refused_with_harbors_400(
    projects: HarborFake, change: dict[str, Any], message: str
) -> None:
    body = {**robot_body("ws-1", "team-a", "team-b"), **change}
    if change.get("duration", 0) is None:
        del body["duration"]

    response = create(projects, body)

    assert error(response) == (400, "BAD_REQUEST", message)
    assert projects.robots() == []


def test_an_unknown_project_answers_404_and_creates_nothing(projects: HarborFake) -> None:
    response = create(projects, robot_body("ws-1", "team-a", "gone"))

    assert error(response) == (404, "NOT_FOUND", "project gone not found")
    assert projects.robots() == []


def test_a_taken_name_answers_409_conflict(projects: HarborFake) -> None:
    created(projects, "ws-1", "team-a")

    response = create(projects, robot_body("ws-1", "team-b"))

    assert error(response) == (409, "CONFLICT", "robot account 0:ws-1 already exists")


def test_namespace_star_grants_pull_on_every_project_including_later_ones(
    projects: HarborFake,
) -> None:
    _, login, secret = created(projects, "everything", "*")
    projects.add_project("team-later", public=False)

    assert [
        pull(projects, p, auth=(login, secret)).status_code
        for p in ("team-a", "team-c", "team-later")
    ] == [200, 200, 200]
    assert projects.robots()[0].permissions == (RobotPermission.project("*"),)


def test_a_project_robot_is_named_after_its_project_and_listed_only_with_its_project_id(
    projects: HarborFake,
) -> None:
    body = {**robot_body("ci", "team-a"), "level": "project"}
    project_id = next(
        p["project_id"]
        for p in httpx.get(f"{projects.url}/api/v2.0/projects", auth=ADMIN).json()
        if p["name"] == "team-a"
    )

    response = create(projects, body)
    system = httpx.get(f"{projects.url}{ROBOTS}", auth=ADMIN).json()
    own = httpx.get(
        f"{projects.url}{ROBOTS}",
        auth=ADMIN,
        params={"q": f"Level=project,ProjectID={project_id}"},
    ).json()

    assert response.json()["name"] == "robot$team-a+ci"
    assert system == []
    assert [r["name"] for r in own] == ["robot$team-a+ci"]


# --------------------------------------------------------------------------- who may call


def test_anonymous_callers_get_401_and_users_without_rights_403_naming_them(
    projects: HarborFake,
) -> None:
    robot_id, _, _ = created(projects, "ws-1", "team-a")
    projects.add_user("dev", "Dev-Pass-1", member_of=["team-a"])
    dev = ("dev", "Dev-Pass-1")
    wrong = (ADMIN_USER, "wrong")

    assert error(create(projects, robot_body("x", "team-a"), auth=None))[:2] == (
        401,
        "UNAUTHORIZED",
    )
    assert error(httpx.get(f"{projects.url}{ROBOTS}", auth=wrong))[:2] == (401, "UNAUTHORIZED")
    assert error(create(projects, robot_body("x", "team-a"), auth=dev)) == (
        403,
        "FORBIDDEN",
        "dev",
    )
    assert error(httpx.get(f"{projects.url}{ROBOTS}", auth=dev)) == (403, "FORBIDDEN", "dev")
    assert error(httpx.delete(f"{projects.url}{ROBOTS}/{robot_id}", auth=dev)) == (
        403,
        "FORBIDDEN",
        "dev",
    )
    assert len(projects.robots()) == 1


def test_a_manager_robot_creates_robots_within_its_own_permissions(projects: HarborFake) -> None:
    auth = manager(projects)

    response = create(projects, robot_body("ws-1", "team-a"), auth=auth)

    assert response.status_code == 201
    login, secret = response.json()["name"], response.json()["secret"]
    assert pull(projects, "team-a", auth=(login, secret)).status_code == 200
    listed = httpx.get(f"{projects.url}{ROBOTS}", auth=auth).json()
    assert [r["name"] for r in listed] == ["robot$manager", "robot$ws-1"]
    assert listed[1]["creator_type"] == "robot"


@pytest.mark.parametrize(
    "body",
    [
        robot_body("ws-1", "team-a", "team-c"),  # team-c: the manager cannot pull there
        robot_body("ws-1", "*"),
        {
            **robot_body("ws-1", "team-a"),
            "permissions": [
                {
                    "kind": "project",
                    "namespace": "team-a",
                    "access": [{"resource": "repository", "action": "push"}],
                }
            ],
        },
        {
            **robot_body("ws-1", "team-a"),
            "permissions": [
                {
                    "kind": "system",
                    "namespace": "/",
                    "access": [{"resource": "project", "action": "create"}],
                }
            ],
        },
    ],
    ids=["another-project", "all-projects", "push", "a-system-permission"],
)
def test_a_manager_robot_cannot_create_broader_robots(
    projects: HarborFake, body: dict[str, Any]
) -> None:
    auth = manager(projects)

    response = create(projects, body, auth=auth)

    assert error(response) == (
        403,
        "DENIED",
        "permission scope is invalid. It must be equal to or more restrictive than the "
        "creator robot's permissions: robot$manager",
    )
    assert [r.name for r in projects.robots()] == ["robot$manager"]


def test_a_manager_robot_with_pull_on_star_may_delegate_any_project(projects: HarborFake) -> None:
    auth = manager(projects, [MANAGER[0], RobotPermission.project("*")])

    response = create(projects, robot_body("ws-1", "team-a", "team-c"), auth=auth)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("missing", "call"),
    [
        ("robot:create", lambda h, a, _: create(h, robot_body("ws-1", "team-a"), auth=a)),
        ("robot:list", lambda h, a, _: httpx.get(f"{h.url}{ROBOTS}", auth=a)),
        ("robot:read", lambda h, a, i: httpx.get(f"{h.url}{ROBOTS}/{i}", auth=a)),
        ("robot:delete", lambda h, a, i: httpx.delete(f"{h.url}{ROBOTS}/{i}", auth=a)),
    ],
)
def test_a_manager_robot_lacking_a_permission_gets_403_forbidden(
    projects: HarborFake, missing: str, call: Any
) -> None:
    target, _, _ = created(projects, "target", "team-a")
    held = [a for a in MANAGER[0].access if a != missing]
    auth = manager(projects, [RobotPermission.system(*held), RobotPermission.project("team-a")])

    response = call(projects, auth, target)

    assert error(response) == (403, "FORBIDDEN", "robot$manager")


def test_a_robot_may_never_put_or_patch_robots_while_a_sysadmin_may(projects: HarborFake) -> None:
    robot_id, login, secret = created(projects, "ws-1", "team-a", "team-b")
    auth = manager(projects)
    url = f"{projects.url}{ROBOTS}/{robot_id}"
    narrower = {**robot_body("ws-1", "team-a"), "name": login}

    robot_put = httpx.put(url, json=narrower, auth=auth)
    robot_patch = httpx.patch(url, json={"secret": ""}, auth=auth)
    assert pull(projects, "team-b", auth=(login, secret)).status_code == 200
    admin_put = httpx.put(url, json=narrower, auth=ADMIN)

    assert error(robot_put) == (403, "FORBIDDEN", "robot$manager")
    assert error(robot_patch) == (403, "FORBIDDEN", "robot$manager")
    assert admin_put.status_code == 200
    assert pull(projects, "team-a", auth=(login, secret)).status_code == 200
    assert pull(projects, "team-b", auth=(login, secret)).status_code == 401
    [ws] = [r for r in projects.robots() if r.name == login]
    assert ws.permissions == (RobotPermission.project("team-a"),)


def test_put_needs_the_full_name_and_the_same_level(projects: HarborFake) -> None:
    robot_id, login, _ = created(projects, "ws-1", "team-a")
    url = f"{projects.url}{ROBOTS}/{robot_id}"

    short_name = httpx.put(url, json=robot_body("ws-1", "team-b"), auth=ADMIN)
    other_level = httpx.put(
        url,
        json={**robot_body("ws-1", "team-b"), "name": login, "level": "project"},
        auth=ADMIN,
    )
    unknown = httpx.put(
        f"{projects.url}{ROBOTS}/999",
        json={**robot_body("ws-1", "team-b"), "name": login},
        auth=ADMIN,
    )

    assert error(short_name) == (400, "BAD_REQUEST", "cannot update the level or name of robot")
    assert error(other_level) == (400, "BAD_REQUEST", "cannot update the level or name of robot")
    assert error(unknown) == (404, "NOT_FOUND", "robot 999 not found")


def test_put_can_disable_and_changes_expiry_from_the_creation_time(projects: HarborFake) -> None:
    robot_id, login, secret = created(projects, "ws-1", "team-a")
    creation = projects.robots()[0]
    url = f"{projects.url}{ROBOTS}/{robot_id}"
    projects.advance_clock(86400)

    disabled = httpx.put(
        url,
        json={**robot_body("ws-1", "team-a", disable=True, duration=2), "name": login},
        auth=ADMIN,
    )
    read = httpx.get(url, auth=ADMIN).json()

    assert disabled.status_code == 200
    assert pull(projects, "team-a", auth=(login, secret)).status_code == 401
    assert read["disable"] is True
    assert read["duration"] == 2
    assert creation.expires_at == -1
    assert read["expires_at"] < projects.now() + 2 * 86400 - 3600  # counted from creation


def test_a_sysadmin_patch_refreshes_the_secret_and_the_old_one_stops_working(
    projects: HarborFake,
) -> None:
    robot_id, login, old = created(projects, "ws-1", "team-a")
    url = f"{projects.url}{ROBOTS}/{robot_id}"

    generated = httpx.patch(url, json={"secret": ""}, auth=ADMIN).json()["secret"]
    weak = httpx.patch(url, json={"secret": "short"}, auth=ADMIN)
    chosen = httpx.patch(url, json={"secret": "Chosen-Secret-2"}, auth=ADMIN)

    assert generated and generated != old
    assert weak.status_code == 400
    assert chosen.json() == {"secret": ""}
    assert pull(projects, "team-a", auth=(login, old)).status_code == 401
    assert pull(projects, "team-a", auth=(login, generated)).status_code == 401
    assert pull(projects, "team-a", auth=(login, "Chosen-Secret-2")).status_code == 200


def test_delete_answers_200_then_404(projects: HarborFake) -> None:
    robot_id, _, _ = created(projects, "ws-1", "team-a")
    url = f"{projects.url}{ROBOTS}/{robot_id}"

    first = httpx.delete(url, auth=ADMIN)
    second = httpx.delete(url, auth=ADMIN)

    assert (first.status_code, first.content) == (200, b"")
    assert error(second) == (404, "NOT_FOUND", f"robot {robot_id} not found")
    assert projects.robots() == []


# --------------------------------------------------------------------------- listing


def test_the_list_is_paginated_like_projects_and_filters_names_with_q(
    projects: HarborFake,
) -> None:
    for i in range(25):
        created(projects, f"sg-{i:02d}", "team-a")
    created(projects, "other-sg-x", "team-a")
    url = f"{projects.url}{ROBOTS}"

    page2 = httpx.get(url, params={"q": "name=~sg-", "page": 2, "page_size": 10}, auth=ADMIN)
    exact = httpx.get(url, params={"q": "name=sg-03"}, auth=ADMIN).json()

    assert page2.headers["x-total-count"] == "26"
    assert page2.headers["link"] == (
        f'<{ROBOTS}?page=1&page_size=10&q=name=~sg->; rel="prev" , '
        f'<{ROBOTS}?page=3&page_size=10&q=name=~sg->; rel="next"'
    )
    assert [r["name"] for r in page2.json()] == [f"robot$sg-{i:02d}" for i in range(9, 19)]
    assert [r["name"] for r in exact] == ["robot$sg-03"]


def test_q_is_matched_against_the_name_without_the_robot_prefix(projects: HarborFake) -> None:
    created(projects, "ws-1", "team-a")

    with_prefix = httpx.get(f"{projects.url}{ROBOTS}", params={"q": "name=~robot$"}, auth=ADMIN)

    assert with_prefix.json() == []


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("Level=global", "bad request error level input"),
        ("Level=project", "must with project ID when to query project robots"),
        ("Level=project,ProjectID=x", "ProjectID must be a positive integer"),
        ("name=[a~b]", "the fake models only k=v and k=~v in q, not name=[a~b]"),
    ],
)
def test_bad_queries_answer_400(projects: HarborFake, q: str, message: str) -> None:
    response = httpx.get(f"{projects.url}{ROBOTS}", params={"q": q}, auth=ADMIN)

    assert error(response) == (400, "BAD_REQUEST", message)


def test_permissions_on_a_removed_project_are_hidden_and_not_revived_by_a_namesake(
    projects: HarborFake,
) -> None:
    _, login, secret = created(projects, "ws-1", "team-a", "team-b")

    projects.remove_project("team-b")
    projects.add_project("team-b", public=False)

    assert projects.robots()[0].permissions == (RobotPermission.project("team-a"),)
    assert pull(projects, "team-b", auth=(login, secret)).status_code == 401


# --------------------------------------------------------------------------- /v2/ and tokens


def test_valid_basic_credentials_open_v2_and_wrong_ones_get_a_basic_challenge(
    projects: HarborFake,
) -> None:
    _, login, secret = created(projects, "ws-1", "team-a")

    ok = httpx.get(f"{projects.url}/v2/", auth=(login, secret))
    wrong = httpx.get(f"{projects.url}/v2/", auth=(login, "wrong"))
    none = httpx.get(f"{projects.url}/v2/")

    assert (ok.status_code, ok.json()) == (200, {})
    assert ok.headers["docker-distribution-api-version"] == "registry/2.0"
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Basic realm="harbor"'
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == (
        f'Bearer realm="{projects.url}/service/token",service="harbor-registry"'
    )


def test_a_robot_pulls_from_its_projects_and_gets_401_elsewhere(projects: HarborFake) -> None:
    _, login, secret = created(projects, "ws-1", "team-a")

    granted = pull(projects, "team-a", auth=(login, secret))
    refused = pull(projects, "team-b", auth=(login, secret))
    head = httpx.head(f"{projects.url}/v2/team-a/app/manifests/v1", auth=(login, secret))

    assert granted.status_code == 200
    assert granted.headers["content-type"] == MANIFEST_MEDIA_TYPE
    assert granted.headers["docker-content-digest"].startswith("sha256:")
    assert granted.json()["mediaType"] == MANIFEST_MEDIA_TYPE
    assert head.status_code == 200
    assert error(refused) == (
        401,
        "UNAUTHORIZED",
        "unauthorized to access repository: team-b/tools/app, action: pull",
    )
    assert refused.headers["www-authenticate"] == 'Basic realm="harbor"'
    assert projects.robot_can_pull(login, "team-a")
    assert not projects.robot_can_pull(login, "team-b")


def test_a_pull_without_authorization_gets_the_bearer_challenge_even_on_a_public_project(
    projects: HarborFake,
) -> None:
    response = pull(projects, "library")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="{projects.url}/service/token",service="harbor-registry",'
        'scope="repository:library/tools/app:pull"'
    )


def test_an_anonymous_token_pulls_public_projects_only(projects: HarborFake) -> None:
    token_url = f"{projects.url}/service/token"
    scopes = {
        "service": "harbor-registry",
        "scope": "repository:library/tools/app:pull repository:team-a/tools/app:pull",
    }

    token = httpx.get(token_url, params=scopes).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    assert pull(projects, "library", headers=bearer).status_code == 200
    assert pull(projects, "team-a", headers=bearer).status_code == 401
    assert httpx.get(token_url, params={"service": "harbor-registry"}).status_code == 401


def test_a_token_outlives_its_robot_until_it_expires(projects: HarborFake) -> None:
    robot_id, login, secret = created(projects, "ws-1", "team-a")
    token = httpx.get(
        f"{projects.url}/service/token",
        auth=(login, secret),
        params={"service": "harbor-registry", "scope": "repository:team-a/tools/app:pull"},
    ).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    httpx.delete(f"{projects.url}{ROBOTS}/{robot_id}", auth=ADMIN)
    after_delete = pull(projects, "team-a", headers=bearer)
    projects.advance_clock(1801)
    after_expiry = pull(projects, "team-a", headers=bearer)

    assert pull(projects, "team-a", auth=(login, secret)).status_code == 401
    assert after_delete.status_code == 200
    assert after_expiry.status_code == 401


def test_disabled_and_expired_robots_are_anonymous(projects: HarborFake) -> None:
    _, login, secret = created(projects, "ws-1", "team-a", "library", duration=1)
    auth = (login, secret)
    other = projects.add_robot(
        "other",
        "Other-Secret-1",
        permissions=[
            RobotPermission.project("team-a"),
        ],
    )

    projects.update_robot(other, disabled=True)
    assert pull(projects, "team-a", auth=auth).status_code == 200
    projects.advance_clock(2 * 86400)

    assert pull(projects, "team-a", auth=auth).status_code == 401
    assert pull(projects, "library", auth=auth).status_code == 200  # public: anyone
    assert httpx.get(f"{projects.url}/v2/", auth=auth).status_code == 401
    assert pull(projects, "team-a", auth=(other, "Other-Secret-1")).status_code == 401
    assert not projects.robot_can_pull(login, "team-a")


def test_a_system_robot_without_project_permissions_cannot_pull_even_public_projects(
    projects: HarborFake,
) -> None:
    lister = projects.add_robot("lister", "Lister-Secret-1")  # system project:list only

    assert pull(projects, "library", auth=(lister, "Lister-Secret-1")).status_code == 401
    assert pull(projects, "library", auth=(ADMIN_USER, "wrong")).status_code == 200


def test_a_project_member_pulls_from_its_project(projects: HarborFake) -> None:
    projects.add_user("dev", "Dev-Pass-1", member_of=["team-a"])

    assert pull(projects, "team-a", auth=("dev", "Dev-Pass-1")).status_code == 200
    assert pull(projects, "team-b", auth=("dev", "Dev-Pass-1")).status_code == 401
    assert pull(projects, "team-b", auth=ADMIN).status_code == 200


def test_an_unknown_project_answers_401_on_v2(projects: HarborFake) -> None:
    response = pull(projects, "nowhere", auth=ADMIN)

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_add_robot_validates_permissions_like_the_api(projects: HarborFake) -> None:
    with pytest.raises(ValueError, match="bad request permission: robot:update"):
        projects.add_robot(
            "bad", "Bad-Secret-1", permissions=[RobotPermission.system("robot:update")]
        )
    with pytest.raises(ValueError, match="project gone not found"):
        projects.add_robot("bad", "Bad-Secret-1", permissions=[RobotPermission.project("gone")])
