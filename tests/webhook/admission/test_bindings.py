"""Binding reviews: a warning before a binding change strands running workloads.

The app is called in process with a snapshot holding binding objects and, per test, an
impact index (what the leader's audit publishes) and a probe (what ``spacegate serve``
injects to compute the impact on the spot). What is checked is what ``kubectl`` shows: the
warnings of an allowed reply, or the denial when acknowledgements are required.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from policy.bindings import ACKNOWLEDGE_ANNOTATION, BindingObject
from policy.config import load_config
from policy.impact import ImpactIndex, WorkspaceUse
from policy.snapshot import NamespaceInfo, Snapshot
from tests.webhook.admission.replies import InProcessClient, mutate, validate
from tests.webhook.conftest import pod, review
from webhook.admission.app import AppSettings, create_app, static_state
from webhook.state import StaticState

CONFIG = """
registries:
  - name: harbor
    type: harbor
    url: https://harbor.demo.local
    spaces: [{name: team-a, public: false}, {name: lib, public: true}]
%s
"""
NAMESPACES = {"a-dev": NamespaceInfo("101"), "b-dev": NamespaceInfo("102")}
NOW = time.time()


def manifest(
    name: str = "team-a",
    *workspaces: str,
    annotations: Mapping[str, str] | None = None,
    space: str = "team-a",
    registry: str = "harbor",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "generation": 1}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "spacegate.io/v1alpha1",
        "kind": "RegistrySpaceBinding",
        "metadata": meta,
        "spec": {"registry": registry, "space": space, "workspaces": list(workspaces or ("101",))},
    }


def index(**uses: WorkspaceUse) -> ImpactIndex:
    return ImpactIndex("2025-01-01T00:00:00Z", NOW - 30, 600.0, {("harbor", "team-a"): dict(uses)})


WEB = WorkspaceUse(7, tuple(f"a-dev/Deployment/web-{i}" for i in range(5)))


class Probe:
    """A stand-in for the cluster probe: answers, sleeps past the budget, or fails."""

    def __init__(
        self,
        uses: Mapping[str, WorkspaceUse] | None = None,
        *,
        delay: float = 0.0,
        fail: bool = False,
    ) -> None:
        self.uses = dict(uses or {})
        self.delay = delay
        self.fail = fail
        self.calls: list[frozenset[str]] = []

    async def impact(
        self,
        snapshot: Snapshot,
        registry: str,
        space: str,
        workspaces: frozenset[str],
        deadline: float,
    ) -> Mapping[str, WorkspaceUse]:
        self.calls.append(workspaces)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("apiserver gone")
        return self.uses


def snapshot(
    objects: dict[str, BindingObject], *, impact: ImpactIndex | None = None, bindings: str = ""
) -> Snapshot:
    return Snapshot.build(
        load_config(CONFIG % bindings),
        namespaces=NAMESPACES,
        binding_objects=objects,
        impact=impact,
    )


def obj(*workspaces: str, name: str = "team-a") -> BindingObject:
    return BindingObject(name, "harbor", "team-a", tuple(sorted(workspaces)))


@pytest.fixture
def app() -> Iterator[Any]:
    clients: list[InProcessClient] = []

    def make(snap: Snapshot, probe: Probe | None = None) -> InProcessClient:
        state = StaticState(snap)
        settings = AppSettings(state=static_state(snap), binding_probe=probe)
        client = InProcessClient(create_app(settings), state)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def update(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return review(new, namespace=None, operation="UPDATE", old_object=old)


def delete(old: dict[str, Any]) -> dict[str, Any]:
    data = review(
        None, namespace=None, operation="DELETE", old_object=old, kind="RegistrySpaceBinding"
    )
    data["request"]["name"] = old["metadata"]["name"]
    return data


def test_removing_a_workspace_warns_naming_a_handful_of_workloads_and_counting_the_rest(
    app: Any,
) -> None:
    client = app(snapshot({"team-a": obj("101", "102")}, impact=index(**{"101": WEB})))

    response = validate(client, update(manifest("team-a", "101", "102"), manifest("team-a", "102")))

    assert response["allowed"] is True
    warnings = response["warnings"]
    assert warnings[0] == (
        "spacegate: workspace 101 loses space harbor/team-a (this change to RegistrySpaceBinding "
        "team-a): 7 running workloads use it, and their new Pods will be refused (as of the "
        "audit at 2025-01-01T00:00:00Z)"
    )
    assert warnings[1:6] == [f"spacegate: - a-dev/Deployment/web-{i}" for i in range(5)]
    assert warnings[6].startswith("spacegate: - … and 2 more; `spacegate audit --what-if")
    assert all(len(w) <= 256 for w in warnings)


def test_deleting_a_binding_warns_and_names_the_command_that_lists_everything(app: Any) -> None:
    use = WorkspaceUse(9, ("a-dev/Pod/p",))
    client = app(snapshot({"team-a": obj("101")}, impact=index(**{"101": use})))

    response = validate(client, delete(manifest("team-a", "101")))

    assert response["allowed"] is True
    assert "deleting RegistrySpaceBinding team-a" in response["warnings"][0]
    assert response["warnings"][-1].endswith(
        "`spacegate audit --what-if-delete team-a` lists them all"
    )


def test_a_removal_nothing_runs_on_or_that_another_binding_covers_is_silent(app: Any) -> None:
    idle = app(snapshot({"team-a": obj("101", "102")}, impact=index()))
    covered = app(
        snapshot(
            {"team-a": obj("101", "102"), "other": obj("101", name="other")},
            impact=index(**{"101": WEB}),
        )
    )
    change = update(manifest("team-a", "101", "102"), manifest("team-a", "102"))

    assert "warnings" not in validate(idle, change)
    assert "warnings" not in validate(covered, change)  # "other" still binds 101


def test_without_a_fresh_index_the_impact_is_computed_on_the_spot(app: Any) -> None:
    probe = Probe({"101": WorkspaceUse(2, ("a-dev/Job/j", "a-dev/Pod/x"))})
    stale = ImpactIndex("2024-01-01T00:00:00Z", NOW - 86_400, 600.0, {})
    client = app(snapshot({"team-a": obj("101", "102")}, impact=stale), probe)

    response = validate(client, update(manifest("team-a", "101", "102"), manifest("team-a", "102")))

    assert probe.calls == [frozenset({"101"})]
    assert response["warnings"][0].endswith("(found just now)")
    assert response["warnings"][1:] == ["spacegate: - a-dev/Job/j", "spacegate: - a-dev/Pod/x"]


def test_a_probe_slower_than_its_budget_is_cut_short_and_the_reply_says_what_to_run(
    app: Any,
) -> None:
    client = app(snapshot({"team-a": obj("101")}), Probe(delay=30))
    started = time.monotonic()

    response = validate(client, delete(manifest("team-a", "101")))

    assert time.monotonic() - started < 4  # 2 s budget, inside the webhook's 5 s timeout
    assert response["allowed"] is True
    assert response["warnings"][0].endswith("which running workloads use it is not known")
    assert response["warnings"][1] == (
        "spacegate: - no fresh audit, and listing them failed or took over 2s: "
        "`spacegate audit --what-if-delete team-a` lists them"
    )


def test_a_failing_probe_never_blocks_a_binding_change_and_the_impact_is_said_unknown(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = app(snapshot({"team-a": obj("101")}), Probe(fail=True))
    response = validate(client, delete(manifest("team-a", "101")))
    assert response["allowed"] is True
    assert response["warnings"][0].endswith("which running workloads use it is not known")
    assert "the impact could not be computed: apiserver gone" in caplog.text


def test_adding_workspaces_warns_about_nothing(app: Any) -> None:
    probe = Probe()
    client = app(snapshot({"team-a": obj("101")}), probe)
    response = validate(client, update(manifest("team-a", "101"), manifest("team-a", "101", "102")))
    assert "warnings" not in response
    assert probe.calls == []


def test_a_new_binding_that_binds_nothing_or_overlaps_another_says_so(app: Any) -> None:
    client = app(snapshot({"other": obj("103", name="other")}))

    undeclared = validate(client, review(manifest("q", registry="quay"), namespace=None))
    unknown = validate(client, review(manifest("z", space="team-z"), namespace=None))
    overlap = validate(client, review(manifest("team-a", "101"), namespace=None))

    assert undeclared["allowed"] and "registry 'quay' is not declared" in undeclared["warnings"][0]
    assert "has no space team-z" in unknown["warnings"][0]
    assert overlap["warnings"] == [
        "spacegate: RegistrySpaceBinding other also binds space team-a of harbor; the union "
        "applies (workspaces 101, 103)"
    ]


def test_with_bindings_from_the_config_only_a_change_is_said_to_have_no_effect(app: Any) -> None:
    client = app(snapshot({}, bindings="bindings: {source: config}"))
    response = validate(client, delete(manifest("team-a", "101")))
    assert response["allowed"] is True
    assert "bindings.source is config" in response["warnings"][0]


# --------------------------------------------------------------------------- acknowledgements


ACK = "bindings: {requireAcknowledgement: true}"


def test_with_acknowledgements_required_a_stranding_removal_is_denied_saying_how(app: Any) -> None:
    client = app(
        snapshot({"team-a": obj("101", "102")}, impact=index(**{"101": WEB}), bindings=ACK)
    )

    response = validate(client, update(manifest("team-a", "101", "102"), manifest("team-a", "102")))

    assert response["allowed"] is False
    message = response["status"]["message"]
    assert (
        "workspaces 101 would lose space harbor/team-a while 7 running workloads use it" in message
    )
    assert f'add the annotation {ACKNOWLEDGE_ANNOTATION}: "101"' in message
    assert response["warnings"][0].startswith("spacegate: workspace 101 loses")


@pytest.mark.parametrize("value", ["101", "*", "101,102"])
def test_an_acknowledged_removal_goes_ahead(app: Any, value: str) -> None:
    client = app(
        snapshot({"team-a": obj("101", "102")}, impact=index(**{"101": WEB}), bindings=ACK)
    )
    new = manifest("team-a", "102", annotations={ACKNOWLEDGE_ANNOTATION: value})
    response = validate(client, update(manifest("team-a", "101", "102"), new))
    assert response["allowed"] is True
    assert response["warnings"]  # still told what it strands


def test_a_deletion_is_acknowledged_on_the_object_before_it_is_deleted(app: Any) -> None:
    client = app(snapshot({"team-a": obj("101")}, impact=index(**{"101": WEB}), bindings=ACK))

    refused = validate(client, delete(manifest("team-a", "101")))
    acknowledged = validate(
        client, delete(manifest("team-a", "101", annotations={ACKNOWLEDGE_ANNOTATION: "101"}))
    )

    assert refused["allowed"] is False
    assert (
        f"kubectl annotate registryspacebinding team-a {ACKNOWLEDGE_ANNOTATION}=101 first"
        in refused["status"]["message"]
    )
    assert acknowledged["allowed"] is True


def test_a_removal_nothing_runs_on_needs_no_acknowledgement(app: Any) -> None:
    client = app(snapshot({"team-a": obj("101")}, impact=index(), bindings=ACK))
    assert validate(client, delete(manifest("team-a", "101")))["allowed"] is True


# --------------------------------------------------------------------------- the admission path


def test_pod_reviews_never_call_the_probe_and_mutate_leaves_bindings_alone(app: Any) -> None:
    probe = Probe(delay=30)
    client = app(snapshot({"team-a": obj("101")}), probe)

    started = time.monotonic()
    validate(client, review(pod("harbor.demo.local/team-a/web:1"), namespace="b-dev"))
    mutated = mutate(client, delete(manifest("team-a", "101")))

    assert time.monotonic() - started < 1
    assert probe.calls == []
    assert mutated["allowed"] is True and "warnings" not in mutated
