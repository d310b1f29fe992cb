"""The provisioning plan: from what exists to what must exist, in a safe order.

``plan`` is pure, so each test states a situation (robots in Harbor, credentials kept,
Secrets in namespaces) and the changes the next pass must make.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from policy.config import load_config
from policy.provisioning import DesiredState, desired_state, robot_base_name
from policy.snapshot import NamespaceInfo, Snapshot
from webhook.leader.provisioning.holders import Holders
from webhook.leader.provisioning.plan import (
    Observed,
    Plan,
    login_entry,
    plan,
    plan_robots,
    plan_secrets,
    robots_in_use,
)
from webhook.leader.provisioning.secrets import PullSecret, RobotCredential

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{name: library, public: true}, {name: team-a, public: false},
             {name: team-b, public: false}]
  - name: live
    type: harbor
    url: https://live.example.com
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
"""
NOW = 1_800_000_000.0
DAY = 86400.0
HOSTS = {"harbor": ("harbor.example.com", "harbor.example.com:443"), "live": ("live.example.com",)}


@dataclass(frozen=True)
class FakeRobot:
    id: int
    name: str
    disabled: bool = False


def desired(**namespaces: str | None) -> DesiredState:
    return desired_state(
        Snapshot.build(
            load_config(CONFIG),
            namespaces={name: NamespaceInfo(workspace=ws) for name, ws in namespaces.items()},
        )
    )


def credential(
    ws: str, robot_id: int, spaces: set[str], age: float = DAY, given: tuple[str, ...] = ("a-dev",)
) -> RobotCredential:
    """A kept credential, recorded as given to the namespaces ``given``."""
    return RobotCredential(
        "harbor",
        ws,
        robot_id,
        f"robot$r{robot_id}",
        frozenset(spaces),
        NOW - age,
        f"pw{robot_id}",
        Holders.of(given),
    )


def secret_for(*robots: RobotCredential) -> PullSecret:
    auths = {
        host: login_entry(r.robot_name, r.password) for r in robots for host in HOSTS["harbor"]
    }
    return PullSecret("x", True, auths)


def writes(result: Plan) -> list[tuple[str, str]]:
    """(namespace, create|update) of each Secret the plan writes."""
    return [(w.namespace, w.verb) for w in result.write_secrets]


def test_a_bound_workspace_gets_a_new_robot_then_its_secrets() -> None:
    result = plan(
        desired(**{"a-dev": "101", "a-prod": "101"}),
        Observed({"harbor": ()}, {}, {}),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )

    assert [(c.spec.key, c.spec.spaces, c.reason) for c in result.create_robots] == [
        (("harbor", "101"), frozenset({"team-a"}), "new")
    ]
    assert writes(result) == [("a-dev", "create"), ("a-prod", "create")]
    assert not result.delete_robots and not result.delete_secrets


def test_nothing_changes_when_everything_is_in_place() -> None:
    kept = credential("101", 7, {"team-a"})
    result = plan(
        desired(**{"a-dev": "101"}),
        Observed(
            {"harbor": (FakeRobot(7, "robot$r7"),)}, {kept.key: kept}, {"a-dev": secret_for(kept)}
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert result.empty


def test_a_changed_space_set_means_new_robot_updated_secrets_then_the_old_robot_goes() -> None:
    old = credential("101", 7, {"team-a", "team-b"})
    result = plan(
        desired(**{"a-dev": "101"}),
        Observed(
            {"harbor": (FakeRobot(7, "robot$r7"),)}, {old.key: old}, {"a-dev": secret_for(old)}
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert [(c.spec.spaces, c.reason) for c in result.create_robots] == [
        (frozenset({"team-a"}), "spaces changed")
    ]
    assert writes(result) == [("a-dev", "update")]
    assert result.delete_robots == [("harbor", 7, "robot$r7")]


def test_an_old_credential_is_rotated_and_a_lost_robot_replaced() -> None:
    stale = credential("101", 7, {"team-a"}, age=31 * DAY)
    lost = credential("102", 8, {"team-b"})
    result = plan(
        desired(**{"a-dev": "101", "b-dev": "102"}),
        Observed(
            {"harbor": (FakeRobot(7, "robot$r7"),)},
            {stale.key: stale, lost.key: lost},
            {"a-dev": secret_for(stale), "b-dev": secret_for(lost)},
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert sorted(c.reason for c in result.create_robots) == ["robot lost", "rotation"]
    assert sorted(writes(result)) == [("a-dev", "update"), ("b-dev", "update")]
    assert result.delete_robots == [("harbor", 7, "robot$r7")]


def test_a_robot_no_credential_names_is_an_orphan_and_is_deleted() -> None:
    kept = credential("101", 7, {"team-a"})
    result = plan(
        desired(**{"a-dev": "101"}),
        Observed(
            {"harbor": (FakeRobot(7, "robot$r7"), FakeRobot(9, "robot$crashed"))},
            {kept.key: kept},
            {"a-dev": secret_for(kept)},
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert result.delete_robots == [("harbor", 9, "robot$crashed")]
    assert not result.create_robots


def test_a_namespace_that_left_the_workspace_loses_its_secret_and_its_robot() -> None:
    kept = credential("101", 7, {"team-a"})
    result = plan(
        desired(**{"a-dev": None}),
        Observed(
            {"harbor": (FakeRobot(7, "robot$r7"),)}, {kept.key: kept}, {"a-dev": secret_for(kept)}
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert result.delete_secrets == ["a-dev"]
    assert result.delete_credentials == [("harbor", "101")]
    assert result.delete_robots == [("harbor", 7, "robot$r7")]


def test_a_foreign_secret_of_the_same_name_is_left_alone_and_reported() -> None:
    result = plan(
        desired(**{"a-dev": "101"}),
        Observed({"harbor": ()}, {}, {"a-dev": PullSecret("a-dev", managed=False)}),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert result.conflicts == ["a-dev"]
    assert writes(result) == []
    assert result.delete_secrets == []


def test_robots_and_entries_of_a_registry_not_listed_yet_are_never_revoked() -> None:
    live_entry = {"live.example.com": {"username": "robot$l", "password": "pw"}}
    result = plan(
        desired(**{"a-dev": None}),
        Observed(
            {},
            {
                ("live", "101"): RobotCredential(
                    "live", "101", 3, "robot$l", frozenset({"x"}), NOW, "pw"
                )
            },
            {"a-dev": PullSecret("a-dev", True, live_entry)},
        ),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert result.delete_secrets == []
    assert result.delete_credentials == []
    assert result.delete_robots == []


def test_the_plan_carries_each_secrets_content_ready_to_write() -> None:
    kept = credential("101", 7, {"team-a"})
    result = plan(
        desired(**{"a-dev": "101", "a-prod": "101"}),
        Observed({"harbor": (FakeRobot(7, "robot$r7"),)}, {kept.key: kept}, {}),
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )
    assert writes(result) == [("a-dev", "create"), ("a-prod", "create")]
    content = orjson.loads(result.write_secrets[0].content)
    assert content == {"auths": {host: login_entry("robot$r7", "pw7") for host in HOSTS["harbor"]}}
    assert "pw7" not in repr(result.write_secrets)  # the content holds passwords


def test_a_robot_not_created_keeps_its_old_robot_and_leaves_its_secrets_alone() -> None:
    """Step 2 with the credentials after a failed step 1: the old one is still in place."""
    old = credential("101", 7, {"team-a", "team-b"})
    wanted = desired(**{"a-dev": "101"})
    observed = Observed(
        {"harbor": (FakeRobot(7, "robot$r7"),)}, {old.key: old}, {"a-dev": secret_for(old)}
    )
    [change] = plan_robots(wanted, observed, now=NOW, rotate_every=30 * DAY)
    assert change.reason == "spaces changed"

    result = plan_secrets(wanted, observed, observed.credentials, hosts_of=HOSTS)

    assert result.write_secrets == [] and result.delete_robots == []


# --------------------------------------------------------------------------- namespaces leaving


def test_a_namespace_that_left_makes_the_robot_it_was_given_rotate() -> None:
    kept = credential("101", 7, {"team-a"}, given=("a-dev", "a-prod"))
    observed = Observed(
        {"harbor": (FakeRobot(7, "robot$r7"),)},
        {kept.key: kept},
        {"a-dev": secret_for(kept), "a-prod": secret_for(kept)},
    )

    result = plan(
        desired(**{"a-dev": "101", "a-prod": "102"}),
        observed,
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )

    reasons = {c.spec.workspace: (c.reason, c.holders.names) for c in result.create_robots}
    assert reasons["101"] == ("namespaces left the workspace: a-prod", frozenset({"a-dev"}))
    assert ("a-dev", "update") in writes(result)
    assert result.delete_robots == [("harbor", 7, "robot$r7")]


def test_a_namespace_joining_is_recorded_first_and_is_no_reason_to_rotate() -> None:
    kept = credential("101", 7, {"team-a"}, given=("a-dev",))
    observed = Observed(
        {"harbor": (FakeRobot(7, "robot$r7"),)}, {kept.key: kept}, {"a-dev": secret_for(kept)}
    )

    result = plan(
        desired(**{"a-dev": "101", "a-test": "101"}),
        observed,
        now=NOW,
        rotate_every=30 * DAY,
        hosts_of=HOSTS,
    )

    assert result.create_robots == []
    [(key, record)] = result.record_holders
    assert key == ("harbor", "101") and record.names == frozenset({"a-dev", "a-test"})
    [write] = result.write_secrets
    assert (write.namespace, write.verb, write.unrecorded) == (
        "a-test",
        "create",
        (("harbor", "101"),),
    )
    assert result.lines()[0] == "record the namespaces given the robot credential harbor/101"


def test_a_credential_without_a_record_rotates_and_is_not_handed_out_meanwhile() -> None:
    legacy = replace(credential("101", 7, {"team-a"}), holders=None)
    observed = Observed(
        {"harbor": (FakeRobot(7, "robot$r7"),)},
        {legacy.key: legacy},
        {"a-dev": secret_for(legacy)},
    )
    wanted = desired(**{"a-dev": "101", "a-test": "101"})

    [change] = plan_robots(wanted, observed, now=NOW, rotate_every=30 * DAY)
    failed = plan_secrets(wanted, observed, observed.credentials, hosts_of=HOSTS)

    assert change.reason == "no record of the namespaces it was given to"
    assert failed.write_secrets == [] and failed.delete_robots == []  # creation failed


MIXED = CONFIG.replace(
    "bindings:",
    """  - name: dr
    type: docker-registry
    url: https://dr.example.com
    anonymousPull: false
    pullCredentials: {usernameFile: /u, passwordFile: /p}
bindings:""",
)


def named(robot: RobotCredential) -> RobotCredential:
    """``robot`` under the login spacegate gives its robots (what Harbor lists)."""
    base = robot_base_name(robot.registry, robot.workspace)
    return replace(robot, robot_name=f"robot${base}-{robot.robot_id}")


def test_a_robot_named_by_a_secret_that_cannot_be_rewritten_is_kept() -> None:
    """The robot was replaced, but one entitled namespace's Secret cannot be rendered now
    (here: its other registry's credential file is unreadable): it keeps the old robot."""
    wanted = desired_state(
        Snapshot.build(load_config(MIXED), namespaces={"a-dev": NamespaceInfo(workspace="101")})
    )
    old = named(credential("101", 7, {"team-a", "team-b"}))
    observed = Observed(
        {"harbor": (FakeRobot(7, old.robot_name),)}, {old.key: old}, {"a-dev": secret_for(old)}
    )

    result = plan(wanted, observed, now=NOW, rotate_every=30 * DAY, hosts_of=HOSTS)

    assert [c.reason for c in result.create_robots] == ["spaces changed"]
    assert result.write_secrets == []  # no pullCredentials read: nothing to render with
    assert result.delete_robots == [] and result.kept_robots == [("harbor", 7, old.robot_name)]
    assert (
        f"keep robot {old.robot_name} (id 7) on harbor: Secrets not rewritten still use it"
        in result.lines()
    )


def test_a_namespace_cannot_keep_another_workspaces_robot_alive_by_naming_it() -> None:
    mine = named(credential("101", 7, {"team-a"}))
    theirs = named(credential("102", 8, {"team-b"}, given=("b-dev",)))
    pasted = {  # a tenant of a-dev pasted workspace 102's login into its own Secret
        "harbor.example.com": login_entry(mine.robot_name, mine.password),
        "elsewhere.example.com": login_entry(theirs.robot_name, "guessed"),
    }
    observed = Observed(
        {"harbor": (FakeRobot(7, mine.robot_name), FakeRobot(8, theirs.robot_name))},
        {mine.key: mine, theirs.key: theirs},
        {"a-dev": PullSecret("a-dev", True, pasted)},
    )

    assert robots_in_use(desired(**{"a-dev": "101"}), observed, ["a-dev"]) == {("harbor", 7)}
