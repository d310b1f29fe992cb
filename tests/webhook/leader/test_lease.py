"""The Lease elector: one replica leads, and knows when it no longer does.

Against the Kubernetes fake, with the real client: candidates take, renew, lose and release
the Lease as client-go's elector does, with a clock each test moves by hand. The common path
also runs against the real apiserver (``tests/e2e/test_leader.py``); here are the races and
lapses an apiserver cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kubernetes import client

from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME, Clock
from webhook.leader.lease import DEFAULT_LEASE_NAME, LeaseElector, LostLeadership, micro_time

LEASES = "/apis/coordination.k8s.io/v1/leases"


def elector(api: client.ApiClient, who: str, clock: Clock, **options: Any) -> LeaseElector:
    timing = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0, **options}
    return LeaseElector(api, HOME, identity=who, clock=clock, **timing)


def lease(kube: FakeKubernetes) -> dict[str, Any]:
    found = kube.get_object(LEASES, HOME, DEFAULT_LEASE_NAME)
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


def test_the_first_candidate_creates_the_lease_and_leads(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    clock = Clock()
    a = elector(api, "a", clock)
    assert a.try_acquire_or_renew()
    assert a.is_leader and a.holder == "a"
    spec = lease(kube)
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == (
        "a",
        15,
        0,
    )
    a.check()  # the leader may write


def test_a_second_candidate_waits_while_the_leader_renews(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(5):
        clock.now += 8  # less than the lease duration between renewals
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert a.is_leader and not b.is_leader
    assert b.holder == "a"
    with pytest.raises(LostLeadership, match=r"not the leader of Lease .*\(held by a\)"):
        b.check()


def test_a_leader_that_stops_renewing_is_replaced_once_its_lease_expires(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert a.try_acquire_or_renew()
    clock.now += 10
    assert not a.is_leader  # past renew_deadline: it stops writing before anyone may take over
    with pytest.raises(LostLeadership):
        a.check()
    assert not b.try_acquire_or_renew()  # not expired yet (15 s)
    clock.now += 6
    assert b.try_acquire_or_renew()
    assert b.is_leader
    assert lease(kube)["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # the old leader finds it taken
    assert a.holder == "b"


def test_of_two_candidates_racing_for_an_expired_lease_only_one_wins(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    clock = Clock()
    a, b, c = (elector(api, who, clock) for who in "abc")
    assert a.try_acquire_or_renew()
    clock.now += 20  # a's lease expired
    # b and c both read the expired Lease; c writes first, so b's write carries a stale
    # resourceVersion and the apiserver answers 409.
    stale = client.CoordinationV1Api(api).read_namespaced_lease(DEFAULT_LEASE_NAME, HOME)
    assert c.try_acquire_or_renew()
    b._api.read_namespaced_lease = lambda *_: stale
    assert not b.try_acquire_or_renew()
    assert not b.is_leader and c.is_leader
    assert lease(kube)["holderIdentity"] == "c"


def test_a_released_lease_is_taken_at_once(kube: FakeKubernetes, api: client.ApiClient) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert a.try_acquire_or_renew()
    a.release()
    assert not a.is_leader
    spec = lease(kube)
    assert spec.get("holderIdentity") is None and spec["leaseDurationSeconds"] == 1
    clock.now += 1.5
    assert b.try_acquire_or_renew()


def test_releasing_a_lease_held_by_another_leaves_it_alone(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert a.try_acquire_or_renew()
    b.release()
    assert lease(kube)["holderIdentity"] == "a"


def test_how_long_leadership_lasts_without_a_renewal(api: client.ApiClient) -> None:
    clock = Clock()
    a = elector(api, "a", clock)
    assert a.lapses_in() == 0.0
    assert a.try_acquire_or_renew()
    clock.now += 4
    assert a.lapses_in() == pytest.approx(6.0)
    clock.now += 7
    assert a.lapses_in() == 0.0 and not a.is_leader


def test_renew_times_are_written_with_a_fraction_the_apiserver_accepts() -> None:
    assert micro_time(1_800_000_000.0).microsecond == 1
    assert micro_time(1_800_000_000.25).microsecond == 250_000


def test_the_campaign_reports_gaining_losing_by_lapse_and_regaining(
    kube: FakeKubernetes, api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """``run`` tells its waiter of every change, including a leadership that lapsed while
    the apiserver could not be reached, and releases the Lease when it stops."""
    caplog.set_level(logging.INFO, logger="webhook.leader.lease")
    clock = Clock()
    a = elector(api, "a", clock, retry_period=0.01, renew_deadline=0.05, lease_duration=0.1)

    async def scenario() -> None:
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(a.wait_changed(), 2)
        assert a.is_leader
        kube.stop()  # the apiserver goes away; renewals fail
        clock.now += 1  # ... for longer than the renew deadline
        await asyncio.wait_for(a.wait_changed(), 5)
        assert not a.is_leader
        kube.start()
        await asyncio.wait_for(a.wait_changed(), 5)
        assert a.is_leader
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert "became the leader" in caplog.text and "lost leadership" in caplog.text
    assert lease(kube).get("holderIdentity") is None  # released on the way out
