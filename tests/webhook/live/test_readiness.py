"""Readiness: what ``/readyz`` says, as a pure function of what the refresher knows.

The refresher tests (``test_refresher.py``) drive these through real pollers and clocks;
these state each situation directly and read the one-line reason an operator sees.
"""

from __future__ import annotations

from policy.config import Registry, load_config
from webhook.live.readiness import (
    BindingListStatus,
    NamespaceStatus,
    RegistryStatus,
    data_age,
    gates_readiness,
    is_listed,
    readiness,
)

TEN_MINUTES = 600.0

CONFIG = """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com"}
  - {name: static-harbor, type: harbor, url: "https://static.example.com",
     spaces: [{name: library, public: true}]}
  - {name: docker, type: docker-registry, url: "https://docker.example.com"}
"""


def registries() -> dict[str, Registry]:
    return {r.name: r for r in load_config(CONFIG).registries}


def status(
    name: str,
    *,
    gating: bool = True,
    synced: bool = True,
    age: float = 5.0,
    error: str | None = None,
) -> RegistryStatus:
    return RegistryStatus(name, gating, synced, age, spaces=3, failures=0, last_error=error)


def test_only_a_harbor_whose_spaces_are_listed_live_gates_readiness() -> None:
    declared = registries()

    assert is_listed(declared["harbor"]) and gates_readiness(declared["harbor"])
    assert not is_listed(declared["static-harbor"])
    assert not gates_readiness(declared["static-harbor"])
    # A Docker Registry is listed, but its spaces are all public: not knowing them changes
    # no decision, so an outage of its catalog must not take the webhook out of service.
    assert is_listed(declared["docker"]) and not gates_readiness(declared["docker"])


def test_not_ready_until_every_gating_registry_was_listed_and_each_is_named_with_its_error() -> (
    None
):
    ready, reason = readiness(
        [
            status("harbor", synced=False, error="HTTP 503 from /api/v2.0/projects"),
            status("other", synced=False),
            status("fine"),
        ],
        None,
        max_staleness=TEN_MINUTES,
        version=0,
    )

    assert not ready
    assert reason == (
        "waiting for the first listing of registry 'harbor' "
        "(last error: HTTP 503 from /api/v2.0/projects), 'other'"
    )


def test_a_registry_that_does_not_gate_never_holds_readiness_back() -> None:
    ready, reason = readiness(
        [status("harbor"), status("docker", gating=False, synced=False, age=86400.0)],
        None,
        max_staleness=TEN_MINUTES,
        version=4,
    )

    assert ready
    assert reason == "snapshot version 4, data 5s old"


def test_not_ready_until_the_namespace_list_has_arrived_when_namespaces_are_watched() -> None:
    waiting = NamespaceStatus(listed=False, age_seconds=None)

    ready, reason = readiness([status("harbor")], waiting, max_staleness=TEN_MINUTES, version=1)

    assert not ready
    assert reason == "waiting for the first namespace list from the Kubernetes API"
    # The probe form skips only the age checks, never the first listing.
    assert not readiness(
        [status("harbor")], waiting, max_staleness=TEN_MINUTES, version=1, staleness=False
    )[0]


def test_not_ready_until_the_binding_objects_were_listed_naming_why_they_were_not() -> None:
    listed = NamespaceStatus(listed=True, age_seconds=1.0)
    waiting = BindingListStatus(listed=False, age_seconds=None, problem="HTTP 503")

    ready, reason = readiness(
        [status("harbor")], listed, max_staleness=TEN_MINUTES, version=1, bindings=waiting
    )

    assert not ready
    assert reason == "waiting for the first list of RegistrySpaceBinding objects (HTTP 503)"
    done = BindingListStatus(listed=True, age_seconds=2.0)
    assert readiness(
        [status("harbor")], listed, max_staleness=TEN_MINUTES, version=1, bindings=done
    )[0]


def test_a_binding_list_older_than_the_limit_is_stale_like_the_namespace_list() -> None:
    ready, reason = readiness(
        [status("harbor")],
        NamespaceStatus(listed=True, age_seconds=1.0),
        max_staleness=TEN_MINUTES,
        version=3,
        bindings=BindingListStatus(listed=True, age_seconds=3600.0),
    )
    assert not ready
    assert "the RegistrySpaceBinding list is 1h old" in reason


def test_stale_data_makes_it_unready_naming_every_stale_source_and_the_limit() -> None:
    ready, reason = readiness(
        [
            status("harbor", age=3600.0, error="connection refused"),
            status("fresh", age=10.0),
            status("old", age=TEN_MINUTES + 1),
        ],
        NamespaceStatus(listed=True, age_seconds=7200.0),
        max_staleness=TEN_MINUTES,
        version=9,
    )

    assert not ready
    assert reason == (
        "stale data: registry 'harbor' is 1h old (last error: connection refused), "
        "registry 'old' is 601s old, the namespace list is 2h old; "
        "policy.maxStaleness is 10m; decisions use the last-known-good data"
    )


def test_data_exactly_as_old_as_the_limit_is_still_fresh() -> None:
    ready, _ = readiness(
        [status("harbor", age=TEN_MINUTES)],
        NamespaceStatus(listed=True, age_seconds=TEN_MINUTES),
        max_staleness=TEN_MINUTES,
        version=2,
    )
    assert ready


def test_without_the_staleness_check_stale_data_is_ready_and_says_it_was_not_checked() -> None:
    ready, reason = readiness(
        [status("harbor", age=3600.0)],
        NamespaceStatus(listed=True, age_seconds=30.0),
        max_staleness=TEN_MINUTES,
        version=7,
        staleness=False,
    )

    assert ready
    assert reason == "snapshot version 7 loaded (data 3600s old; staleness not checked)"


def test_the_data_age_is_that_of_the_oldest_gating_source() -> None:
    assert data_age([], None) == 0.0
    assert data_age([status("a", age=12.0), status("b", age=40.0)], None) == 40.0
    assert data_age([status("a", age=12.0), status("d", gating=False, age=999.0)], None) == 12.0
    assert data_age([status("a", age=12.0)], NamespaceStatus(True, 90.0)) == 90.0
    # A namespace list never known in sync has no age of its own (readiness waits for it).
    assert data_age([status("a", age=12.0)], NamespaceStatus(False, None)) == 12.0
