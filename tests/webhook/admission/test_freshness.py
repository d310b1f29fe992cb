"""Allows that rest on watch-fed state wait for it to be current, or are refused for a retry.

A replica whose namespace or binding watch broke may hold a binding that was deleted, or a
namespace's old workspace. The state here says how current it is (a scripted
:class:`webhook.state.Freshness`), and the app in process answers as ``/validate`` would; what
is checked is what the apiserver is told, and whether the review waited.
"""

from __future__ import annotations

from typing import Any

import pytest

from policy.snapshot import NamespaceInfo, Snapshot
from tests.webhook.conftest import fixed_state, pod, review
from webhook.admission.app import create_app
from webhook.admission.freshness import BUDGET, budget, leans_on_watches
from webhook.state import Freshness, StaticState

from .replies import ALLOWED_IMAGE, TEAM_A_IMAGE, TEAM_B_IMAGE, InProcessClient, accepted, post


class Scripted:
    """Not current (``behind``) until a wait; then ``caught_up`` (a snapshot) or still behind."""

    def __init__(self, state: StaticState, behind: tuple[str, ...], caught_up: Snapshot | None):
        self.state = state
        self.behind = behind
        self.caught_up = caught_up
        self.waits: list[float] = []

    def not_current(self) -> tuple[str, ...]:
        return self.behind

    async def wait_current(self, budget: float) -> tuple[str, ...]:
        self.waits.append(budget)
        if self.caught_up is not None:
            self.behind = ()
            self.state.replace(self.caught_up)
        return self.behind


class GatedState(StaticState):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.gate: Scripted = Scripted(self, (), None)

    @property
    def freshness(self) -> Freshness:
        return self.gate


BEHIND = ("the RegistrySpaceBinding watch is not current (the watch failed: reset)",)


def answer(
    state: GatedState, image: str, namespace: str = "team-a-dev", path: str = "/validate"
) -> dict[str, Any]:
    client = InProcessClient(create_app(fixed_state(state)), state)
    try:
        sent = review(pod(image), namespace=namespace)
        return accepted(sent, post(client, path, sent), mutating=False)
    finally:
        client.close()


@pytest.fixture
def state(demo_snapshot: Snapshot) -> GatedState:
    return GatedState(demo_snapshot)


def test_a_bound_private_image_is_refused_for_a_retry_while_the_state_is_not_current(
    state: GatedState,
) -> None:
    state.gate = Scripted(state, BEHIND, None)

    reply = answer(state, TEAM_A_IMAGE)

    assert not reply["allowed"]
    assert reply["status"]["code"] == 503
    assert reply["status"]["reason"] == "ServiceUnavailable"
    message = reply["status"]["message"]
    assert BEHIND[0] in message
    assert "retry" in message
    assert state.gate.waits == [BUDGET]


def test_a_state_that_catches_up_during_the_wait_decides_on_the_new_snapshot(
    state: GatedState, demo_snapshot: Snapshot
) -> None:
    # Meanwhile team-a-dev was relabelled to workspace 102: team-a is no longer its space.
    moved = Snapshot.build(
        demo_snapshot.config,
        namespaces={"team-a-dev": NamespaceInfo("102")},
        version=demo_snapshot.version + 1,
    )
    state.gate = Scripted(state, BEHIND, moved)

    reply = answer(state, TEAM_A_IMAGE)

    assert not reply["allowed"]
    assert reply["status"]["code"] == 403
    assert "workspace 102" in reply["status"]["message"]
    assert state.gate.waits == [BUDGET]


def test_a_current_state_answers_as_before(state: GatedState) -> None:
    state.gate = Scripted(state, (), None)

    assert answer(state, TEAM_A_IMAGE)["allowed"]
    assert state.gate.waits == [BUDGET]  # the gate is asked; it answers at once


@pytest.mark.parametrize(
    ("image", "allowed"),
    [(ALLOWED_IMAGE, True), (TEAM_B_IMAGE, False)],
    ids=["public image admitted", "unbound image refused by the policy"],
)
def test_what_needs_no_tenant_state_never_waits(
    state: GatedState, image: str, allowed: bool
) -> None:
    state.gate = Scripted(state, BEHIND, None)

    reply = answer(state, image)

    assert reply["allowed"] is allowed
    if not allowed:
        assert reply["status"]["code"] == 403
    assert state.gate.waits == []


def test_an_allow_under_a_permissive_mode_rests_on_the_namespace_s_labels(
    demo_snapshot: Snapshot,
) -> None:
    """warn/audit may come from a namespace label that has since said enforce."""
    from policy.decision import decide

    warned = Snapshot.build(
        demo_snapshot.config, namespaces={"dev": NamespaceInfo("101", mode="warn")}
    )
    spec = pod(TEAM_B_IMAGE)["spec"]
    assert leans_on_watches(decide(warned, "dev", spec))
    assert leans_on_watches(decide(demo_snapshot, "team-a-dev", pod(TEAM_A_IMAGE)["spec"]))
    assert not leans_on_watches(decide(demo_snapshot, "team-a-dev", pod(ALLOWED_IMAGE)["spec"]))
    assert not leans_on_watches(decide(demo_snapshot, "team-a-dev", spec))


def test_the_wait_fits_inside_the_timeout_the_apiserver_gives_the_call(state: GatedState) -> None:
    """A webhook configured with timeoutSeconds: 2 must not wait 2 s: the apiserver would
    give up first and show "failed calling webhook" instead of the reason."""
    state.gate = Scripted(state, BEHIND, None)

    reply = answer(state, TEAM_A_IMAGE, path="/validate?timeout=2s")

    assert reply["status"]["code"] == 503
    assert state.gate.waits == [pytest.approx(0.8)]


@pytest.mark.parametrize(
    ("query", "wait"),
    [
        (b"", BUDGET),
        (b"timeout=10s", BUDGET),
        (b"timeout=5s", BUDGET),
        (b"timeout=1s", 0.4),
        (b"a=b&timeout=2.5s", 1.0),
        (b"timeout=1m0s", BUDGET),  # not what the apiserver sends (at most 30s): the default
        (b"timeout=" + b"9" * 10_000 + b"s", BUDGET),
    ],
)
def test_the_budget_is_read_from_the_apiserver_s_timeout(query: bytes, wait: float) -> None:
    assert budget(query) == pytest.approx(wait)
