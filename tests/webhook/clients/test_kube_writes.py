"""Bounded, throttle-aware apiserver writes: at most N in flight, a 429 waited out and counted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from tests.fakes.kubernetes import FakeKubernetes
from webhook.clients.kube_writes import Throttle, ThrottleMetrics, WritePool, retry_after, send

NS = "writes"


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.create_namespace(NS)
        yield fake


@pytest.fixture
def api(kube: FakeKubernetes) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def secret(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {}}


def test_a_write_is_sent_as_json_and_answered_raw(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    body = send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a"))
    assert b'"name":"a"' in body.replace(b" ", b"")
    assert kube.get_object("/api/v1/secrets", NS, "a") is not None


def test_a_refused_write_raises_what_the_official_client_would(api: client.ApiClient) -> None:
    send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a"))
    with pytest.raises(ApiException) as refused:
        send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a"))
    assert refused.value.status == 409
    assert "already exists" in (refused.value.body or "")


def test_a_429_is_retried_after_its_retry_after_and_counted(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.fail_next(2, 429, path_prefix=f"/api/v1/namespaces/{NS}/secrets", retry_after="1")
    waits: list[float] = []
    registry = CollectorRegistry()
    throttle = Throttle(job="test", sleep=waits.append)
    throttle.metrics = ThrottleMetrics(registry)

    throttle.call(lambda: send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a")))

    assert waits == [1.0, 1.0]
    assert throttle.throttled == 2
    assert registry.get_sample_value("spacegate_apiserver_throttled_total", {"job": "test"}) == 2
    assert kube.get_object("/api/v1/secrets", NS, "a") is not None


def test_retries_of_429_are_bounded(kube: FakeKubernetes, api: client.ApiClient) -> None:
    kube.fail_next(10, 429, retry_after="0")
    throttle = Throttle(attempts=3, sleep=lambda _: None)
    with pytest.raises(ApiException) as refused:
        throttle.call(lambda: send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a")))
    assert refused.value.status == 429
    assert throttle.throttled == 2


def test_other_refusals_are_not_retried(kube: FakeKubernetes, api: client.ApiClient) -> None:
    kube.fail_next(1, 500)
    calls: list[int] = []

    def write() -> bytes:
        calls.append(1)
        return send(api, "POST", f"/api/v1/namespaces/{NS}/secrets", secret("a"))

    with pytest.raises(ApiException):
        Throttle(sleep=lambda _: None).call(write)
    assert calls == [1]


def test_a_429_without_retry_after_backs_off_with_jitter() -> None:
    refused = ApiException(status=429)
    assert retry_after(refused) is None
    waits: list[float] = []
    attempts = iter([refused, refused, None])

    def write() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "done"

    assert Throttle(sleep=waits.append).call(write) == "done"
    assert len(waits) == 2 and 0 < waits[0] <= 0.5 and 0 < waits[1] <= 1.0


class Counting:
    """A write that takes a while and records how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.01)
        with self.lock:
            self.now -= 1
        return 1


def test_a_pool_keeps_at_most_its_workers_in_flight_from_asyncio() -> None:
    write = Counting()
    with WritePool(4) as pool:
        results = asyncio.run(pool.gather([write] * 40))
    assert results == [1] * 40
    assert write.most == 4


def test_a_pool_keeps_at_most_its_workers_in_flight_from_a_thread() -> None:
    write = Counting()
    with WritePool(3) as pool:
        results = pool.map(write for _ in range(30))
    assert results == [1] * 30
    assert write.most == 3


def test_a_pool_hands_back_each_failure_in_its_place() -> None:
    def fail() -> int:
        raise ValueError("refused")

    with WritePool(2) as pool:
        results = pool.map([lambda: 1, fail, lambda: 3])
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)
