"""A replica reads the cluster's last-known-good copy only while a registry needs it."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator

import pytest
from kubernetes import client

from policy.last_known_good import DATA_KEY, SECRET_NAME, Copy, RegistryCopy, encode
from tests.fakes.kubernetes import FakeKubernetes
from webhook.live.sources.last_known_good import CopyReader

HOME = "spacegate-system"
COPY = Copy({"harbor": RegistryCopy("harbor", "https://h.example.com", {"team-a": False})}, 5.0)


class Consumer:
    """Stands for the refresher: needs a copy until told otherwise, records what it got."""

    def __init__(self) -> None:
        self.needed = True
        self.offered: list[tuple[Copy, float]] = []

    def needs_copy(self) -> bool:
        return self.needed

    def adopt(self, copy: Copy, now: float) -> bool:
        self.offered.append((copy, now))
        return True


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.create_namespace(HOME)
        yield fake


@pytest.fixture
def api(kube: FakeKubernetes) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def store(kube: FakeKubernetes, data: dict[str, str]) -> None:
    kube.create_object(
        "/api/v1/secrets", HOME, {"metadata": {"name": SECRET_NAME}, "type": "Opaque", "data": data}
    )


def test_the_copy_is_read_from_the_secret(kube: FakeKubernetes, api: client.ApiClient) -> None:
    store(kube, {DATA_KEY: base64.b64encode(encode(COPY)).decode()})
    assert CopyReader(Consumer(), HOME, api).read() == COPY


def test_no_secret_yet_is_no_copy_and_said_once(
    api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    reader = CopyReader(Consumer(), HOME, api)
    with caplog.at_level(logging.WARNING):
        assert reader.read() is None
        assert reader.read() is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "not been written yet" in lines[0]


@pytest.mark.parametrize(
    "data",
    [{}, {DATA_KEY: "%%% not base64"}, {DATA_KEY: base64.b64encode(b"not zlib").decode()}],
    ids=["empty", "not-base64", "not-a-copy"],
)
def test_a_secret_without_a_readable_copy_is_no_copy(
    kube: FakeKubernetes, api: client.ApiClient, data: dict[str, str]
) -> None:
    store(kube, data)
    assert CopyReader(Consumer(), HOME, api).read() is None


def test_an_apiserver_that_fails_is_no_copy(kube: FakeKubernetes, api: client.ApiClient) -> None:
    kube.fail_next(1, 500)
    assert CopyReader(Consumer(), HOME, api).read() is None


def test_the_copy_is_offered_while_needed_and_never_read_once_not(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store(kube, {DATA_KEY: base64.b64encode(encode(COPY)).decode()})
    consumer = Consumer()
    reader = CopyReader(consumer, HOME, api, refetch=0.2, offer=0.02, wall=lambda: 42.0)

    async def scenario() -> None:
        task = asyncio.create_task(reader.run())
        try:
            while len(consumer.offered) < 3:
                await asyncio.sleep(0.01)
            consumer.needed = False
            await asyncio.sleep(0.1)
            kube.clear_requests()
            await asyncio.sleep(0.5)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert consumer.offered[0] == (COPY, 42.0)
    assert [r for r in kube.requests if SECRET_NAME in r.path] == []
