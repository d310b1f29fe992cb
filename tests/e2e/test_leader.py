"""One writer: the Lease elector against the real apiserver.

Provisioning and the background audit run only on the holder of the Lease; these tests
show the election behaves as client-go's does: one leader at a time, a holder that stops
renewing is replaced once its lease expires, a released lease is taken at once, and a
replica that is not the leader refuses to write.
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from webhook.leader.lease import LeaseElector, LostLeadership

pytestmark = pytest.mark.e2e


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def home(api_client: client.ApiClient) -> str:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def elector(api_client: client.ApiClient, home: str, who: str, clock: Clock) -> LeaseElector:
    return LeaseElector(
        api_client,
        home,
        identity=who,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
    )


def test_of_two_candidates_exactly_one_leads_and_the_other_may_not_write(
    api_client: client.ApiClient, home: str
) -> None:
    clock = Clock()
    first, second = elector(api_client, home, "a", clock), elector(api_client, home, "b", clock)

    assert first.try_acquire_or_renew() is True
    assert second.try_acquire_or_renew() is False

    first.check()
    with pytest.raises(LostLeadership, match="held by a"):
        second.check()
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(
        "spacegate-provisioner", home
    )
    assert lease.spec is not None and lease.spec.holder_identity == "a"


def test_a_leader_that_stops_renewing_is_replaced_after_its_lease_expires(
    api_client: client.ApiClient, home: str
) -> None:
    clock = Clock()
    first, second = elector(api_client, home, "a", clock), elector(api_client, home, "b", clock)
    assert first.try_acquire_or_renew()

    clock.now += 10  # past the renew deadline: the old leader stops writing by itself...
    assert not first.is_leader
    assert second.try_acquire_or_renew() is False  # ...but the lease is not expired yet
    clock.now += 6
    assert second.try_acquire_or_renew() is True
    assert second.transitions == 0  # read before the takeover
    assert first.try_acquire_or_renew() is False
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(
        "spacegate-provisioner", home
    )
    assert lease.spec is not None and lease.spec.lease_transitions == 1


def test_a_released_lease_is_taken_at_once(api_client: client.ApiClient, home: str) -> None:
    clock = Clock()
    first, second = elector(api_client, home, "a", clock), elector(api_client, home, "b", clock)
    assert first.try_acquire_or_renew()

    first.release()

    assert not first.is_leader
    assert second.try_acquire_or_renew() is True


def test_the_leader_keeps_the_lease_by_renewing_it(api_client: client.ApiClient, home: str) -> None:
    clock = Clock()
    first, second = elector(api_client, home, "a", clock), elector(api_client, home, "b", clock)
    for _ in range(5):
        assert first.try_acquire_or_renew()
        clock.now += 8  # renewed within the deadline every time
        assert second.try_acquire_or_renew() is False
