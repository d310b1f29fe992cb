"""What a config reload keeps: the pure plan the refresher carries out.

Each test reloads from one config to another and states which registries keep their
poller, which are relisted (and whether their spaces are carried over meanwhile), which
start and which stop. ``test_refresher.py`` checks the refresher doing it.
"""

from __future__ import annotations

from policy.config import Registry, load_config
from webhook.live.reload import ReloadPlan, plan_reload, same_endpoint, same_source

BEFORE = """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com",
     credentials: {usernameFile: /etc/harbor/user, passwordFile: /etc/harbor/password}}
  - {name: docker, type: docker-registry, url: "https://docker.example.com"}
  - {name: static, type: harbor, url: "https://static.example.com",
     spaces: [{name: library, public: true}]}
"""


def listed(text: str) -> dict[str, Registry]:
    """The registries a refresher polls under ``text`` (the ones listed live), by name."""
    return {r.name: r for r in load_config(text).registries if r.spaces is None}


def reload(after: str) -> ReloadPlan:
    return plan_reload(listed(BEFORE), load_config(after))


def test_an_unchanged_config_keeps_every_poller() -> None:
    plan = reload(BEFORE)

    assert plan == ReloadPlan(
        keep=frozenset({"harbor", "docker"}),
        restart=frozenset(),
        carry_spaces=frozenset(),
        start=frozenset(),
        stop=frozenset(),
    )
    assert plan.relisted == []


def test_a_new_interval_hosts_or_workspace_keeps_the_poller_which_takes_the_new_declaration() -> (
    None
):
    plan = reload(
        BEFORE.replace(
            'url: "https://docker.example.com"',
            'url: "https://docker.example.com", refreshInterval: 5m, '
            "hosts: [docker.example.com, mirror.example.com], workspace: '101'",
        )
    )

    assert plan.keep == {"harbor", "docker"}
    assert not plan.restart and not plan.start and not plan.stop


def test_new_credentials_relist_the_registry_but_keep_its_spaces_meanwhile() -> None:
    plan = reload(BEFORE.replace("/etc/harbor/password", "/etc/harbor/rotated"))

    assert plan.restart == {"harbor"}
    assert plan.carry_spaces == {"harbor"}  # same endpoint: the spaces are still true
    assert plan.keep == {"docker"}
    assert plan.relisted == ["harbor"]


def test_a_new_url_or_type_starts_over_without_the_old_spaces() -> None:
    moved = reload(BEFORE.replace("https://harbor.example.com", "https://harbor2.example.com"))
    retyped = reload(
        BEFORE.replace(
            '{name: docker, type: docker-registry, url: "https://docker.example.com"}',
            '{name: docker, type: harbor, url: "https://docker.example.com"}',
        )
    )

    assert moved.restart == {"harbor"} and not moved.carry_spaces
    assert retyped.restart == {"docker"} and not retyped.carry_spaces


def test_added_registries_start_and_removed_or_now_static_ones_stop() -> None:
    after = """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com",
     spaces: [{name: team-a, public: false}]}
  - {name: quay, type: docker-registry, url: "https://quay.example.com"}
  - {name: static, type: harbor, url: "https://static.example.com"}
"""
    plan = reload(after)

    # harbor now declares its spaces and docker is gone: neither is polled any more;
    # static now lists its spaces live, so for the refresher it is new, like quay.
    assert plan.stop == {"harbor", "docker"}
    assert plan.start == {"quay", "static"}
    assert not plan.keep and not plan.restart
    assert plan.relisted == ["quay", "static"]


def test_every_registry_lands_in_at_most_one_set() -> None:
    after = BEFORE.replace("/etc/harbor/password", "/etc/harbor/rotated") + (
        '  - {name: quay, type: docker-registry, url: "https://quay.example.com"}\n'
    )
    plan = reload(after)

    sets = [plan.keep, plan.restart, plan.start, plan.stop]
    names = [name for each in sets for name in each]
    assert sorted(names) == ["docker", "harbor", "quay"]
    assert plan.carry_spaces <= plan.restart


def test_the_same_endpoint_and_the_same_source_are_judged_on_type_url_and_credentials() -> None:
    before = listed(BEFORE)["harbor"]
    rotated = listed(BEFORE.replace("/etc/harbor/user", "/etc/harbor/other-user"))["harbor"]

    assert same_endpoint(before, rotated) and not same_source(before, rotated)
    assert same_source(before, listed(BEFORE)["harbor"])
    assert not same_endpoint(before, listed(BEFORE)["docker"])
