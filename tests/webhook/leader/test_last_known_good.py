"""The leader writes the last-known-good copy only when what it holds changes."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from policy.config import load_config
from policy.last_known_good import (
    DATA_KEY,
    SECRET_NAME,
    Copy,
    RegistryCopy,
    decode,
    encode,
)
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME, Clock
from webhook.leader.last_known_good import CopyMetrics, CopyWriter
from webhook.leader.lease import LostLeadership

CONFIG = load_config(
    """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com"}
  - {name: other, type: harbor, url: "https://other.example.com"}
""",
    "test.yaml",
)
HARBOR = RegistryCopy("harbor", "https://harbor.example.com", {"library": True, "team-a": False})
OTHER = RegistryCopy("harbor", "https://other.example.com", {"tools": False})
PATH = "/api/v1/secrets"


def stored(kube: FakeKubernetes) -> Copy | None:
    secret = kube.get_object(PATH, HOME, SECRET_NAME)
    assert secret is not None
    value = (secret.get("data") or {}).get(DATA_KEY)
    return None if value is None else decode(base64.b64decode(value))


def version(kube: FakeKubernetes) -> str:
    secret = kube.get_object(PATH, HOME, SECRET_NAME)
    assert secret is not None
    return str(secret["metadata"]["resourceVersion"])


@pytest.fixture
def writer(api: client.ApiClient) -> CopyWriter:
    return CopyWriter(api, HOME, clock=Clock())


def test_the_first_copy_is_created_with_the_leaders_listings(
    kube: FakeKubernetes, writer: CopyWriter
) -> None:
    assert writer.write(CONFIG, {"harbor": HARBOR}) == "created"

    copy = stored(kube)
    assert copy == Copy({"harbor": HARBOR}, 1_800_000_000.0)
    secret = kube.get_object(PATH, HOME, SECRET_NAME)
    assert secret is not None and secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["spacegate.io/component"] == "last-known-good"


def test_nothing_is_written_while_the_listings_stay_the_same(
    kube: FakeKubernetes, writer: CopyWriter
) -> None:
    writer.write(CONFIG, {"harbor": HARBOR})
    before = version(kube)

    for _ in range(3):
        assert writer.write(CONFIG, {"harbor": HARBOR}) == "unchanged"

    assert version(kube) == before


def test_a_leader_that_has_listed_nothing_writes_no_empty_copy(
    kube: FakeKubernetes, writer: CopyWriter
) -> None:
    assert writer.write(CONFIG, {}) == "unchanged"

    assert kube.get_object(PATH, HOME, SECRET_NAME) is None


def test_the_secret_the_chart_made_is_filled_in_keeping_its_metadata(
    kube: FakeKubernetes, writer: CopyWriter
) -> None:
    labels = {"app.kubernetes.io/managed-by": "Helm", "spacegate.io/component": "last-known-good"}
    kube.create_object(
        PATH,
        HOME,
        {
            "metadata": {"name": SECRET_NAME, "labels": labels, "annotations": {"a": "b"}},
            "type": "Opaque",
        },
    )

    assert writer.write(CONFIG, {"harbor": HARBOR}) == "written"

    secret = kube.get_object(PATH, HOME, SECRET_NAME)
    assert secret is not None
    assert secret["metadata"]["labels"] == labels
    assert secret["metadata"]["annotations"] == {"a": "b"}
    assert stored(kube) == Copy({"harbor": HARBOR}, 1_800_000_000.0)


def test_a_change_of_spaces_is_written(kube: FakeKubernetes, writer: CopyWriter) -> None:
    writer.write(CONFIG, {"harbor": HARBOR})
    private_library = RegistryCopy(HARBOR.type, HARBOR.url, {"library": False})

    assert writer.write(CONFIG, {"harbor": private_library}) == "written"

    copy = stored(kube)
    assert copy is not None and copy.registries == {"harbor": private_library}


def test_a_leader_that_has_not_listed_a_registry_keeps_what_the_copy_holds_of_it(
    kube: FakeKubernetes, writer: CopyWriter
) -> None:
    writer.write(CONFIG, {"harbor": HARBOR, "other": OTHER})
    newer = RegistryCopy(HARBOR.type, HARBOR.url, {"library": True})

    writer.write(CONFIG, {"harbor": newer})  # "other" not listed by this leader (yet)

    copy = stored(kube)
    assert copy is not None and copy.registries == {"harbor": newer, "other": OTHER}


def test_a_copy_too_large_for_its_bound_clears_the_secret(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    writer = CopyWriter(api, HOME, clock=Clock())
    writer.write(CONFIG, {"harbor": HARBOR})
    huge = RegistryCopy(HARBOR.type, HARBOR.url, {f"s{i}": True for i in range(3_000)})
    small = CopyWriter(api, HOME, clock=Clock(), max_bytes=len(encode(Copy({"harbor": HARBOR}))))

    assert small.write(CONFIG, {"harbor": huge}) == "cleared"
    assert stored(kube) is None  # an outdated copy is not left standing
    assert small.write(CONFIG, {"harbor": huge}) == "unchanged"


def test_a_replica_that_is_not_the_leader_writes_nothing(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    def not_leader() -> None:
        raise LostLeadership("not the leader")

    writer = CopyWriter(api, HOME, clock=Clock(), guard=not_leader)
    with pytest.raises(LostLeadership):
        writer.write(CONFIG, {"harbor": HARBOR})
    assert kube.get_object(PATH, HOME, SECRET_NAME) is None


def test_writes_and_the_size_are_counted(kube: FakeKubernetes, writer: CopyWriter) -> None:
    registry = CollectorRegistry()
    writer.metrics = CopyMetrics(registry)

    writer.write(CONFIG, {"harbor": HARBOR})
    writer.write(CONFIG, {"harbor": HARBOR})

    assert (
        registry.get_sample_value("spacegate_last_known_good_writes_total", {"result": "created"})
        == 1
    )
    size = registry.get_sample_value("spacegate_last_known_good_bytes")
    assert size is not None and 0 < size < 200


def test_a_refused_write_is_reported_not_raised(
    kube: FakeKubernetes, writer: CopyWriter, api: client.ApiClient
) -> None:
    elsewhere = CopyWriter(api, "no-such-namespace", clock=Clock())
    assert elsewhere.write(CONFIG, {"harbor": HARBOR}) == "failed"
