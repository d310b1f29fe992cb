"""Paged lists of the Kubernetes API: every item, one page at a time, whatever the kind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fakes.kubernetes import FakeKubernetes
from webhook.clients.kube_paging import list_items, pages

PODS = "/api/v1/pods"


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        for namespace in ("a", "b"):
            fake.create_namespace(namespace)
        for i in range(5):
            labels = {"tier": "web" if i % 2 else "db"}
            fake.create_object(
                PODS, "a" if i < 3 else "b", {"metadata": {"name": f"p{i}", "labels": labels}}
            )
        yield fake


@pytest.fixture
def api(kube: FakeKubernetes) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def names(items: Iterator[dict[str, Any]]) -> list[str]:
    return [item["metadata"]["name"] for item in items]


def test_every_item_is_listed_following_continue_tokens(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    assert names(list_items(api, PODS, page_size=2)) == ["p0", "p1", "p2", "p3", "p4"]
    requests = [r for r in kube.requests if r.path == PODS]
    assert [r.params.get("limit") for r in requests] == ["2", "2", "2"]
    assert ["continue" in r.params for r in requests] == [False, True, True]


def test_selectors_and_namespaces_narrow_the_list(api: client.ApiClient) -> None:
    assert names(list_items(api, PODS, [("labelSelector", "tier=web")], page_size=1)) == [
        "p1",
        "p3",
    ]
    assert names(list_items(api, "/api/v1/namespaces/b/pods")) == ["p3", "p4"]
    assert names(list_items(api, PODS, [("fieldSelector", "metadata.name=p2")])) == ["p2"]


def test_a_page_that_fails_raises_with_the_status_and_path(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.fail_next(1, 403, path_prefix=PODS)
    with pytest.raises(ApiException) as info:
        list(list_items(api, PODS))
    assert info.value.status == 403 and info.value.reason == f"GET {PODS}"


def test_an_expired_continue_token_is_the_callers_to_handle(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    listing = list_items(api, PODS, page_size=2)
    assert names(iter([next(listing), next(listing)])) == ["p0", "p1"]
    kube.compact()  # etcd compacted: the token held is too old
    with pytest.raises(ApiException) as info:
        list(listing)
    assert info.value.status == 410


def test_pages_follow_the_tokens_a_caller_fetches_its_own_way() -> None:
    served = {None: {"metadata": {"continue": "t1"}}, "t1": {"metadata": {"continue": "t2"}}}
    asked: list[str | None] = []

    def fetch(token: str | None) -> dict[str, Any]:
        asked.append(token)
        return served.get(token, {"metadata": {}})

    assert len(list(pages(fetch))) == 3
    assert asked == [None, "t1", "t2"]
