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


# --------------------------------------------------------------------------- pages bounded by bytes


def big_pod(name: str, size: int) -> dict[str, Any]:
    container = {"name": "c", "image": "x", "env": [{"name": "BLOB", "value": "b" * size}]}
    return {"metadata": {"name": name}, "spec": {"containers": [container]}}


def asked_limits(kube: FakeKubernetes, path: str) -> list[int]:
    return [int(r.params["limit"]) for r in kube.requests if r.path == path]


def test_pages_of_large_objects_ask_for_as_many_as_the_byte_budget_holds(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    for i in range(12):
        kube.create_object(PODS, "a", big_pod(f"big{i}", 100_000))

    listed = names(list_items(api, PODS, [("labelSelector", "!tier")], page_bytes=400_000))

    assert sorted(listed) == sorted(f"big{i}" for i in range(12))
    # the first page at the largest size etcd allows, the next ones at the size seen: ~100 KB
    assert asked_limits(kube, PODS) == [1, 3, 3, 3, 3]


def test_pages_of_small_objects_grow_to_the_page_size(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    assert len(list(list_items(api, PODS, page_size=2))) == 5
    before = len(asked_limits(kube, PODS))

    assert len(list(list_items(api, PODS, page_size=500))) == 5

    assert asked_limits(kube, PODS)[before:] == [2, 500]


def test_a_continue_key_inside_an_object_is_not_taken_for_the_lists(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    forged = {"metadata": {"name": "forger", "annotations": {"continue": "forged-token"}}}
    kube.create_object(PODS, "b", forged)

    listed = names(list_items(api, PODS, page_size=3))

    assert sorted(listed) == ["forger", "p0", "p1", "p2", "p3", "p4"]
    assert all(r.params.get("continue") != "forged-token" for r in kube.requests)


class StreamedResponse:
    """A urllib3 response fed piece by piece, recording how much was read when."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.status = 200
        self.pieces = pieces
        self.read_pieces = 0
        self.released = False

    def stream(self, amount: int, decode_content: bool) -> Iterator[bytes]:
        for piece in self.pieces:
            self.read_pieces += 1
            yield piece

    def release_conn(self) -> None:
        self.released = True


class StreamingApi:
    """An ApiClient whose every GET answers with the next of ``responses``."""

    def __init__(self, *responses: StreamedResponse) -> None:
        self.responses = list(responses)
        self.queries: list[dict[str, Any]] = []

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
        self.queries.append(dict(kwargs["query_params"]))
        return method, path, {}, None, None

    def call_api(self, *args: Any) -> Any:
        return type("RESTResponse", (), {"response": self.responses.pop(0)})()


def test_an_item_is_handed_on_before_the_rest_of_its_page_is_read() -> None:
    page = StreamedResponse(
        [b'{"kind":"PodList","metadata":{},"items":[{"metadata":{"name":"first"}}', b","]
        + [b'{"metadata":{"name":"n%d"}},' % i for i in range(50)]
        + [b'{"metadata":{"name":"last"}}]}']
    )
    listing = list_items(StreamingApi(page), PODS)  # type: ignore[arg-type]

    assert next(listing)["metadata"]["name"] == "first"
    assert page.read_pieces == 1
    assert len(list(listing)) == 51
    assert page.released


def test_a_custom_resources_list_with_its_metadata_after_the_items_is_followed() -> None:
    first = StreamedResponse(
        [
            b'{"apiVersion":"x/v1","items":[{"metadata":{"name":"r1"}}],',
            b'"kind":"RList",',
            b'"metadata":{"continue":"next-page","resourceVersion":"7"}}',
        ]
    )
    second = StreamedResponse([b'{"apiVersion":"x/v1","items":[{"metadata":{"name":"r2"}}],'])
    second.pieces.append(b'"kind":"RList","metadata":{"resourceVersion":"7"}}')
    api = StreamingApi(first, second)

    assert names(list_items(api, "/apis/x/v1/rs")) == ["r1", "r2"]  # type: ignore[arg-type]
    assert api.queries[1]["continue"] == "next-page"


def test_a_page_that_is_not_json_is_an_error_naming_the_path() -> None:
    api = StreamingApi(StreamedResponse([b'{"items":[{"metadata":', b"oops"]))

    with pytest.raises(ApiException, match=f"GET {PODS}"):
        list(list_items(api, PODS))  # type: ignore[arg-type]
